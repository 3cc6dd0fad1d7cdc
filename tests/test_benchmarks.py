"""The benchmark scripts run end to end (tiny sizes; numbers not asserted),
their FLOP counts and flags, and their timing helpers
(`keras_sdgm.utils.timing`) under every backend."""

import argparse
import contextlib
import io
import json
import os
from unittest import mock

import keras
import numpy as np
import pytest
from keras import ops

from benchmarks import dictionary
from benchmarks import generate
from benchmarks import profile_step
from benchmarks import run
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models.sdgm.spectral_dictionary_block import ENCODER_TYPES
from keras_sdgm.training import recipe
from keras_sdgm.utils import timing
from tests.conftest import shared_data_dir
from tests.testing import END_TO_END
from tests.testing import TestCase
from tests.testing import only_under

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
# The tiny sizes of the end-to-end runs; RWKV-7's head size is then
# hidden_dim // num_heads = 8.
TINY = ["--hidden-dim", "16", "--num-heads", "2"]


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
                "--rounds",
                "2",
                *TINY,
                "--num-layers",
                "1",
                "--encoder-type",
                "depthwise",
                "--vocabulary-size",
                "10000",
                "--quality-model",
                os.path.join(
                    ROOT, "saved_models", "ptb_sdgm_small", "model.keras"
                ),
                "--judge-model",
                os.path.join(
                    ROOT, "saved_models", "ptb_sdgm_small", "model.keras"
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
            [
                ("gpt2", 16),
                ("gpt2", 64),
                ("rwkv7", 16),
                ("rwkv7", 64),
                ("sdgm", 16),
                ("sdgm", 64),
            ],
        )
        for row in result["latency"]:
            self.assertGreater(row["latency_ms"], 0)
        self.assertEqual(set(result["parameters"]), {"sdgm", "gpt2", "rwkv7"})
        # Two sweeps give one row per model and context, each the median
        # over both.
        self.assertEqual(result["config"]["rounds"], 2)
        # The flag reached the model that was timed.
        self.assertEqual(result["config"]["encoder_type"], "depthwise")
        self.assertEqual(
            result["model_details"]["sdgm"],
            {
                "encoder_type": "depthwise",
                "dictionary_type": "static",
                "modes_per_feature": False,
                "data_dependent_decay": False,
            },
        )
        self.assertEqual(result["model_details"]["rwkv7"]["head_size"], 8)
        self.assertEqual(
            result["plots"]["generate_latency.png"],
            ["SDGM", "GPT-2 (KV cache)", "RWKV-7 (state)"],
        )
        with open(os.path.join(out, "generate.md")) as f:
            table = f.read()
        for header in ("RWKV-7 ms/token", "GPT-2 / SDGM", "RWKV-7 / SDGM"):
            self.assertIn(header, table)
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
        run.main(RUN_ARGUMENTS + list(arguments))
    return printed.getvalue()


# One length (each configuration is a child process of its own, seconds
# of imports and compiling); the paper's one-convolution block with 8 atoms
# (`sdgm_base` with its 256 atoms took 12 s to compile the training step,
# with 8 atoms 10 s, `sdgm_paper` 6 s); a small peak matmul.
RUN_ARGUMENTS = [
    "--lengths",
    "16",
    "--preset",
    "sdgm_paper",
    *TINY,
    "--num-layers",
    "1",
    "--vocabulary-size",
    "50",
    "--num-atoms",
    "8",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--peak-matmul-size",
    "256",
]


@pytest.mark.slow
@END_TO_END
class RunBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        # Where the huge-page tunable would help, the tip is printed once.
        with mock.patch.object(
            recipe, "huge_pages_would_help", return_value=True
        ):
            printed = run_benchmark(
                "--output-dir", out, "--encoder-type", "depthwise"
            )
        self.assertEqual(printed.count("GLIBC_TUNABLES=glibc.malloc."), 1)
        for name in (
            "run.json",
            "run.md",
            "run_throughput.png",
            "run_memory.png",
        ):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual(
            [(r["model"], r["length"]) for r in report["results"]],
            [("sdgm", 16), ("gpt2", 16), ("rwkv7", 16)],
        )
        for row in report["results"]:
            self.assertEqual(row["status"], "ok", row)
            self.assertGreater(row["train_tokens_per_second"], 0)
            self.assertGreater(row["peak_memory_bytes"], 0)
            self.assertGreater(row["achieved_fraction_of_peak"], 0)
        self.assertGreater(min(report["matmul_peak_flops"].values()), 0)
        self.assertEqual(
            report["environment"].get("XLA_FLAGS"), os.environ.get("XLA_FLAGS")
        )
        sdgm, _, rwkv7 = report["results"]
        # The flag reached the model that was measured, and its FLOPs are
        # the depthwise mixer's, not the dense one's.
        self.assertEqual(report["config"]["encoder_type"], "depthwise")
        self.assertEqual(sdgm["encoder_type"], "depthwise")
        # sdgm_paper's block at D = 16, K = 8, V = 50: one kernel-3
        # convolution, no feed-forward. Depthwise: 3 x D taps and the
        # D x K projection; the dense D x K convolution gives 2,624.
        mixing_and_output = 2 * 8 * 16 + 2 * 16 * 50
        self.assertEqual(
            sdgm["forward_flops_per_token"],
            2 * 3 * 16 + 2 * 16 * 8 + mixing_and_output,
        )
        self.assertEqual(rwkv7["head_size"], 8)
        self.assertIn("delta_rule_operator", rwkv7)
        for labels in report["plots"].values():
            self.assertEqual(labels, ["SDGM", "GPT-2", "RWKV-7"])
        self.assertEqual(
            set(report["plots"]), {"run_throughput.png", "run_memory.png"}
        )
        with open(os.path.join(out, "run.md")) as f:
            table = f.read()
        self.assertIn("| 16 | RWKV-7 |", table)
        for peer in ("GPT-2", "RWKV-7"):
            for quantity in ("train tok/s", "forward tok/s", "peak memory"):
                self.assertIn(f"SDGM / {peer} {quantity}", table)

    def test_a_configuration_over_the_memory_limit_is_reported(self):
        out = self.get_temp_dir()
        run_benchmark(
            "--output-dir", out, "--memory-limit-gb", "0.05", "--models", "gpt2"
        )
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual(
            [r["status"] for r in report["results"]],
            ["out of memory (above 0.05 GiB)"],
        )
        with open(os.path.join(out, "run.md")) as f:
            self.assertIn("out of memory", f.read())
        # The results are not replaced unless asked; --resume keeps them.
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            run_benchmark("--output-dir", out, "--models", "gpt2")
        # A run started before --encoder-type and --rwkv-head-size existed
        # resumes while they are at their defaults; another value is
        # another setting.
        for key in ("encoder_type", "rwkv_head_size"):
            del report["config"][key]
        with open(os.path.join(out, "run.json"), "w") as f:
            json.dump(report, f)
        with self.assertRaisesRegex(ValueError, "other settings"):
            run_benchmark(
                "--output-dir",
                out,
                "--memory-limit-gb",
                "0.05",
                "--models",
                "gpt2",
                "--encoder-type",
                "depthwise",
                "--resume",
            )
        resumed = run_benchmark(
            "--output-dir",
            out,
            "--memory-limit-gb",
            "0.05",
            "--models",
            "gpt2",
            "--resume",
        )
        self.assertEqual(resumed.count("(from the interrupted run)"), 1)

    def test_rounds_repeat_every_configuration_and_resume(self):
        out = self.get_temp_dir()
        limited = ["--memory-limit-gb", "0.05", "--models", "gpt2"]
        run_benchmark("--output-dir", out, *limited, "--rounds", "2")
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual(
            [(r["length"], r["round"]) for r in report["round_results"]],
            [(16, 0), (16, 1)],
        )
        (result,) = report["results"]
        self.assertEqual(result["status"], "out of memory (above 0.05 GiB)")
        self.assertEqual(
            [r["status"] for r in result["rounds"]], [result["status"]] * 2
        )
        # An interrupted run resumes at the round it had not finished.
        del report["round_results"][1]
        report["complete"] = False
        with open(os.path.join(out, "run.json"), "w") as f:
            json.dump(report, f)
        resumed = run_benchmark(
            "--output-dir", out, *limited, "--rounds", "2", "--resume"
        )
        self.assertEqual(resumed.count("(from the interrupted run)"), 1)
        self.assertIn("round 2", resumed)
        with open(os.path.join(out, "run.md")) as f:
            self.assertIn("medians over 2 rounds", f.read())


class MedianResultTest(TestCase):
    def round_result(self, train, memory, status="ok"):
        return {
            "status": status,
            "model": "sdgm",
            "length": 16,
            "train_tokens_per_second": train,
            "forward_tokens_per_second": 3 * train,
            "train_step_seconds": 1 / train,
            "forward_step_seconds": 1 / (3 * train),
            "peak_memory_bytes": memory,
        }

    def test_medians_over_the_rounds_and_the_largest_memory(self):
        merged = run.median_result(
            [
                self.round_result(100.0, 5),
                self.round_result(400.0, 7),
                self.round_result(200.0, 6),
            ]
        )
        self.assertEqual(merged["train_tokens_per_second"], 200.0)
        self.assertEqual(merged["forward_tokens_per_second"], 600.0)
        self.assertEqual(merged["train_step_seconds"], 1 / 200.0)
        self.assertEqual(merged["peak_memory_bytes"], 7)
        self.assertEqual(
            [r["train_tokens_per_second"] for r in merged["rounds"]],
            [100.0, 400.0, 200.0],
        )

    def test_a_failed_round_is_the_result(self):
        failed = {"status": "timed out after 1 s", "peak_memory_bytes": 9}
        merged = run.median_result([self.round_result(100.0, 5), failed])
        self.assertEqual(merged["status"], "timed out after 1 s")
        self.assertNotIn("train_tokens_per_second", merged)
        self.assertEqual(
            [r["status"] for r in merged["rounds"]],
            ["ok", "timed out after 1 s"],
        )


def tiny_sdgm_backbone(**kwargs):
    """One block: kernel 3, rates [1, 2]; K = 4, D = 8, I = 16, V = 10."""
    return SDGMBackbone(
        vocabulary_size=10,
        hidden_dim=8,
        num_atoms=4,
        window_length=8,
        num_layers=1,
        dilation_rates=[1, 2],
        intermediate_dim=16,
        **kwargs,
    )


class FlopsPerTokenTest(TestCase):
    """`run.flops_per_token` against counts by hand (module docstring)."""

    # Mixing the K = 4 atoms with the default (static) dictionary, one
    # (B L, K) x (K, D) matmul: 2 K D; the feed-forward (I = 16) and the
    # output layer (V = 10) of `tiny_sdgm_backbone`.
    SDGM_REST = 2 * 4 * 8 + 4 * 8 * 16 + 2 * 8 * 10

    def test_dense_mixer(self):
        # One residual D x D kernel-3 convolution and the last D x K one.
        expected = (2 * 3 * 8 * 8) + (2 * 3 * 8 * 4) + self.SDGM_REST
        backbone = tiny_sdgm_backbone(encoder_type="dilated_convolution")
        self.assertEqual(run.flops_per_token("sdgm", backbone, 8, 10), expected)

    def test_depthwise_mixer(self):
        # Two depthwise kernel-3 convolutions (3 x D taps each) and the
        # D x K projection. The dense formula gave 1,312 here.
        expected = 2 * (2 * 3 * 8) + (2 * 8 * 4) + self.SDGM_REST
        backbone = tiny_sdgm_backbone(encoder_type="depthwise")
        self.assertEqual(run.flops_per_token("sdgm", backbone, 8, 10), expected)

    def test_other_dictionaries(self):
        # Separable frequency: two (B L, 2 K) x (2 K, D) matmuls, 8 K D;
        # shared frequency: one, 4 K D; the paper's dictionary: one (K, D)
        # matmul per position, 2 K D (as the static one).
        for dictionary_type, flops in (
            ("separable_frequency", 8 * 4 * 8),
            ("shared_frequency", 4 * 4 * 8),
            ("spectral", 2 * 4 * 8),
        ):
            expected = (
                2 * (2 * 3 * 8)
                + (2 * 8 * 4)
                + self.SDGM_REST
                - 2 * 4 * 8
                + flops
            )
            backbone = tiny_sdgm_backbone(
                encoder_type="depthwise", dictionary_type=dictionary_type
            )
            self.assertEqual(
                run.flops_per_token("sdgm", backbone, 8, 10),
                expected,
                msg=dictionary_type,
            )

    def test_a_mixers_weightless_sequence_work_is_added(self):
        backbone = tiny_sdgm_backbone(encoder_type="depthwise")
        without = run.flops_per_token("sdgm", backbone, 8, 10)
        backbone.blocks[0].encoder.sequence_flops_per_token = lambda L: 5 * L
        self.assertEqual(
            run.flops_per_token("sdgm", backbone, 8, 10), without + 5 * 8
        )

    def test_gpt2(self):
        import keras_hub

        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=10,
            num_layers=2,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=32,
            max_sequence_length=16,
        )
        # N (8 D^2 + 4 D I + 4 L D) + 2 D V; counting the attention's
        # (heads, head_dim) biases as weights gave 96 more.
        expected = 2 * (8 * 64 + 4 * 8 * 32 + 4 * 16 * 8) + 2 * 8 * 10
        self.assertEqual(
            run.flops_per_token("gpt2", backbone, 16, 10), expected
        )

    def test_rwkv7(self):
        import keras_hub

        # LoRA widths of the same shapes as the other weights: each new
        # weight shape costs JAX a compile of its initializer.
        d, i = 8, 32
        backbone = keras_hub.models.RWKV7Backbone(
            hidden_size=d,
            head_size=4,
            num_layers=2,
            vocabulary_size=10,
            intermediate_dim=i,
            gate_lora=32,
            mv_lora=8,
            aaa_lora=8,
            decay_lora=8,
        )
        # Per layer: receptance, key, value, output; the channel mix; the
        # LoRAs of decay (8), in-context rate (8) and gate (32); r_k (heads
        # x head size); and the state update, 9 N^2 per head of size N = 4,
        # D / N heads.
        per_layer = (
            8 * d * d
            + 4 * d * i
            + 4 * d * (8 + 8 + 32)
            + 2 * d
            + 9 * 4 * 4 * (d // 4)
        )
        # Two layers; the value-mix LoRA (8) is not in the first.
        expected = 2 * per_layer + 4 * d * 8 + 2 * d * 10
        # Without the state update this gave 576 less.
        self.assertEqual(
            run.flops_per_token("rwkv7", backbone, 16, 10), expected
        )
        # The state update does not grow with the length.
        self.assertEqual(
            run.flops_per_token("rwkv7", backbone, 4096, 10), expected
        )


class BenchmarkFlagsTest(TestCase):
    def test_every_mixer_is_a_choice_and_the_default_is_the_presets(self):
        for encoder_type in ENCODER_TYPES:
            self.assertEqual(
                run.parse_args(["--encoder-type", encoder_type]).encoder_type,
                encoder_type,
            )
            self.assertEqual(
                generate.parse_args(
                    ["--encoder-type", encoder_type]
                ).encoder_type,
                encoder_type,
            )
        # Without the flag, the preset's mixer (the end-to-end runs pass
        # "depthwise" and check that it was built).
        default = run.parse_args(RUN_ARGUMENTS)
        self.assertIsNone(default.encoder_type)
        lm = run.build_model(default, "sdgm", 16)
        self.assertEqual(lm.backbone.encoder_type, "dilated_convolution")

    def test_the_block_flags_override_sdgm_base(self):
        # The default SDGM as it ships, and the one before the convergence
        # runs (docs/ABLATIONS.md) by its flags.
        default = run.parse_args([*RUN_ARGUMENTS, "--preset", "sdgm_base"])
        previous = run.parse_args(
            [*RUN_ARGUMENTS, "--preset", "sdgm_base", "--dictionary-type"]
            + ["separable_frequency", "--encoder-type", "gated_spectral"]
        )
        self.assertEqual(
            [
                (lm.backbone.encoder_type, lm.backbone.dictionary_type)
                for lm in (
                    run.build_model(args, "sdgm", 16)
                    for args in (default, previous)
                )
            ],
            [
                ("gated_retention", "static"),
                ("gated_spectral", "separable_frequency"),
            ],
        )

    def test_the_spectral_mixers_options_reach_the_model(self):
        for flag, option in (
            ("--modes-per-feature", "modes_per_feature"),
            ("--data-dependent-decay", "data_dependent_decay"),
        ):
            args = run.parse_args(
                [*RUN_ARGUMENTS, "--encoder-type", "spectral", flag]
            )
            lm = run.build_model(args, "sdgm", 16)
            self.assertTrue(getattr(lm.backbone, option), flag)
            self.assertTrue(getattr(lm.backbone.blocks[0].encoder, option))
            # The generation benchmark builds its SDGM from the same flags.
            args = generate.parse_args(["--num-layers", "1", flag])
            self.assertTrue(getattr(args, option))
            backbone = generate.build_models(
                argparse.Namespace(
                    **{
                        **vars(args),
                        "models": ["sdgm"],
                        "encoder_type": "spectral",
                    }
                ),
                16,
            )["sdgm"].backbone
            self.assertTrue(getattr(backbone, option), flag)
        # Left out: the preset's (off).
        self.assertIsNone(run.parse_args([]).data_dependent_decay)
        self.assertIsNone(generate.parse_args([]).modes_per_feature)
        with self.assertRaisesRegex(ValueError, "has no modes"):
            run.build_model(
                run.parse_args([*RUN_ARGUMENTS, "--data-dependent-decay"]),
                "sdgm",
                16,
            )

    def test_rwkv_head_size_must_divide_the_width(self):
        self.assertEqual(run.rwkv_head_size(run.parse_args([])), 64)
        for parse in (run.parse_args, generate.parse_args):
            with contextlib.redirect_stderr(io.StringIO()):
                with self.assertRaises(SystemExit):
                    parse(["--rwkv-head-size", "48"])
            # Without RWKV-7 the head size is not used.
            parse(["--rwkv-head-size", "48", "--models", "sdgm"])

    def test_rounds_and_feed_forward_width_are_checked(self):
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            with self.assertRaises(SystemExit):
                run.parse_args(["--rounds", "0"])
        self.assertIn(
            "--rounds: must be a positive integer", printed.getvalue()
        )
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            with self.assertRaises(SystemExit):
                run.parse_args(["--intermediate-dim", "-3"])
        self.assertIn(
            "--intermediate-dim: must be a non-negative integer",
            printed.getvalue(),
        )


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


class ProfileStepTest(TestCase):
    def test_ops_are_attributed_to_the_part_their_metadata_names(self):
        step = "jit(train_step)/transpose(jvp(sdgm_backbone))"
        cases = {
            f"{step}/block_3/feedforward_output/dot_general": (
                "feedforward_output"
            ),
            f"{step}/block_1/encoder/gate/dot_general": "encoder/gate",
            f"{step}/block_1/encoder/mul": "encoder",
            f"{step}/block_0/dictionary/while/body/mul": "dictionary",
            "x/transformer_layer_1/self_attention/query/einsum": (
                "self_attention"
            ),
            "jit(train_step)/jvp(token_embedding)/dot_general": (
                "output layer + loss"
            ),
            "jit(train_step)/jit(log_softmax)/exp": "output layer + loss",
            "jit(train_step)/adam/mul": "optimizer",
            "jit(train_step)/mul": "other",
            None: "(no metadata)",
        }
        for op_name, part in cases.items():
            self.assertEqual(profile_step.part_of(op_name), part, op_name)
        self.assertEqual(profile_step.kind_of("ynn_fusion.3"), "matmul")
        self.assertEqual(profile_step.kind_of("copy_bitcast_fusion"), "copy")
        self.assertEqual(
            profile_step.kind_of("wrapped_exponential"), "elementwise"
        )

    def test_shares_split_the_step_by_part_and_kind(self):
        times = {"ynn_fusion.1": 30, "copy.2": 10, "exp.3": 60}
        names = {"ynn_fusion.1": "a/block_0/dictionary/x", "copy.2": "a/adam"}
        rows = profile_step.shares(times, names)
        self.assertEqual(
            [(row["part"], row["share"]) for row in rows],
            [("(no metadata)", 0.6), ("dictionary", 0.3), ("optimizer", 0.1)],
        )
        self.assertEqual(rows[1]["matmul"], 0.3)
        self.assertEqual(rows[2]["copy"], 0.1)

    @only_under("jax", "it reads XLA's trace through the JAX profiler")
    def test_profiles_a_tiny_model(self):
        out = os.path.join(self.get_temp_dir(), "profile")
        profile_step.main(
            [
                *TINY,
                "--models",
                "sdgm",
                "--lengths",
                "16",
                "--num-layers",
                "1",
                "--vocabulary-size",
                "50",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--output-dir",
                out,
            ]
        )
        with open(os.path.join(out, "profile.json")) as f:
            report = json.load(f)
        parts = {row["part"]: row for row in report["parts"]}
        self.assertGreater(report["thread_seconds_per_step"], 0.0)
        self.assertAlmostEqual(sum(p["share"] for p in parts.values()), 1.0)
        for part in ("dictionary", "feedforward_intermediate", "optimizer"):
            self.assertGreater(parts[part]["share"], 0.0, part)
        self.assertTrue(os.path.exists(os.path.join(out, "profile.png")))
        with self.assertRaisesRegex(SystemExit, "--overwrite"):
            profile_step.main(
                ["--models", "sdgm", "--lengths", "16", "--output-dir", out]
            )
        with self.assertRaisesRegex(SystemExit, "one model"):
            profile_step.main(["--models", "sdgm", "gpt2", "--lengths", "16"])
