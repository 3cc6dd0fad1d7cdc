"""The benchmark scripts run end to end (tiny sizes; numbers not asserted)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import shared_data_dir
from tests.testing import TestCase

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def load_generate_benchmark():
    spec = importlib.util.spec_from_file_location(
        "generate_benchmark", os.path.join(ROOT, "benchmarks", "generate.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TextQualityTest(TestCase):
    def test_known_values(self):
        scores = load_generate_benchmark().text_quality(
            [[1, 2, 1, 2, 1, 2], [3, 4, 5]]
        )
        # Unigrams: 9 tokens, 5 distinct; bigrams: 7, distinct 12 21 34 45.
        self.assertAllClose(scores["distinct_1"], 5 / 9)
        self.assertAllClose(scores["distinct_2"], 4 / 7)
        # 4-grams of the first: 1212 2121 1212 -> one of three repeats; the
        # second has none (fewer than 4 tokens: not counted).
        self.assertAllClose(scores["repetition_4gram"], 1 / 3)


@pytest.mark.slow
class GenerateBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "generate.py"),
             "--contexts", "16", "64", "--steps", "2", "--hidden-dim", "16",
             "--num-heads", "2", "--vocabulary-size", "10000",
             "--quality-model",
             os.path.join(ROOT, "saved_models", "ptb_sdgm_tiny", "model.keras"),
             "--judge-model",
             os.path.join(ROOT, "saved_models", "ptb_sdgm_tiny", "model.keras"),
             "--samples", "3", "--length", "16", "--gmm-windows", "16",
             "--data-dir", shared_data_dir(), "--output-dir", out],
            check=True, env=os.environ,
        )
        with open(os.path.join(out, "generate.json")) as f:
            result = json.load(f)
        self.assertEqual(
            sorted((r["model"], r["context"]) for r in result["latency"]),
            [("gpt2", 16), ("gpt2", 64), ("sdgm", 16), ("sdgm", 64)],
        )
        for row in result["latency"]:
            self.assertGreater(row["latency_ms"], 0)
        self.assertEqual(set(result["quality"]), {"encoder", "prior", "posterior"})
        for scores in result["quality"].values():
            self.assertBetween(scores["distinct_1"], 0.0, 1.0)
            self.assertGreater(scores["judge_perplexity"], 1.0)
        for name in ("generate.md", "generate_latency.png"):
            self.assertTrue(os.path.exists(os.path.join(out, name)))


def run_benchmark(*arguments):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"),
         "--lengths", "16", "32", "--hidden-dim", "16", "--num-layers", "1",
         "--num-heads", "2", "--vocabulary-size", "50", "--steps", "1",
         "--warmup", "1", *arguments],
        check=True, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
class RunBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        run_benchmark("--output-dir", out)
        for name in ("run.json", "run.md", "run_throughput.png",
                     "run_memory.png"):
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
        run_benchmark("--output-dir", out, "--memory-limit-gb", "0.05",
                      "--models", "gpt2")
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual([r["status"] for r in report["results"]],
                         ["out of memory (above 0.05 GiB)"] * 2)
        with open(os.path.join(out, "run.md")) as f:
            self.assertIn("out of memory", f.read())
        # The results are not replaced unless asked; --resume keeps them.
        with self.assertRaises(subprocess.CalledProcessError) as raised:
            run_benchmark("--output-dir", out, "--models", "gpt2")
        self.assertIn("--overwrite", raised.exception.stderr)
        resumed = run_benchmark("--output-dir", out, "--memory-limit-gb",
                                "0.05", "--models", "gpt2", "--resume")
        self.assertEqual(resumed.stdout.count("(from the interrupted run)"), 2)


class FlopsPerTokenTest(TestCase):
    def test_known_values(self):
        spec = importlib.util.spec_from_file_location(
            "run_benchmark", os.path.join(ROOT, "benchmarks", "run.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from keras_sdgm.models import SDGMBackbone

        # One block: kernel 3, rates [1, 2] -> one residual D x D conv and
        # the last D x K conv; K = 4, D = 8, I = 16, V = 10.
        backbone = SDGMBackbone(vocabulary_size=10, hidden_dim=8, num_atoms=4,
                                sequence_length=8, num_layers=1,
                                dilation_rates=[1, 2], intermediate_dim=16)
        expected = (2 * 3 * 8 * 8) + (2 * 3 * 8 * 4) + 2 * 4 * 8 + (
            4 * 8 * 16) + 2 * 8 * 10
        self.assertEqual(
            module.flops_per_token("sdgm", backbone, 8, 10), expected)


@pytest.mark.slow
class DictionaryBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "dictionary.py"),
             "--shapes", "40,4,8,2", "--chunk-sizes", "16", "--steps", "1",
             "--output-dir", out],
            check=True, capture_output=True, text=True, timeout=600,
        )
        with open(os.path.join(out, "dictionary.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual([r["variant"] for r in rows],
                         ["direct", "chunked 16"])
        for row in rows:
            self.assertGreater(row["forward_backward_seconds"], 0)
