import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import ops

from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models.sdgm.spectral_dictionary_block import DICTIONARY_TYPES
from keras_sdgm.models.sdgm.spectral_dictionary_block import ENCODER_TYPES
from tests.fixtures import ALL_TERMS
from tests.fixtures import TINY_BACKBONE
from tests.fixtures import TINY_TEXT
from tests.fixtures import lm_batch
from tests.fixtures import tiny_lm
from tests.fixtures import tiny_preprocessor
from tests.testing import TestCase

# What fit() and evaluate() log of the objective.
LOGGED_TERMS = (
    "loss",
    "nll",
    "reconstruction_loss",
    "stft_loss",
    "prior_loss",
)


class SDGMCausalLMTest(TestCase):
    def test_task_basics(self):
        preprocessor = tiny_preprocessor()
        backbone = SDGMBackbone(
            **{
                **TINY_BACKBONE,
                "vocabulary_size": preprocessor.tokenizer.vocabulary_size(),
            }
        )
        self.run_task_test(
            cls=SDGMCausalLM,
            init_kwargs={"backbone": backbone, "preprocessor": preprocessor},
            train_data=(TINY_TEXT,),
            expected_output_shape=(
                3,
                8,
                preprocessor.tokenizer.vocabulary_size(),
            ),
        )

    def test_call_returns_plain_logits(self):
        lm = tiny_lm()
        x, _, _ = lm_batch()
        logits = lm(x)
        self.assertEqual(tuple(logits.shape), (4, 8, 10))
        self.assertAllClose(lm.predict(x, verbose=0), logits, atol=1e-5)

    def test_fit_logs_every_term_and_weights_them(self):
        lm = tiny_lm(nll_weight=0.7, **ALL_TERMS)
        lm.compile()
        x, y, sw = lm_batch()
        history = lm.fit(x, y, sample_weight=sw, epochs=2, verbose=0)
        for name in LOGGED_TERMS + ("perplexity",):
            self.assertIn(name, history.history)
            self.assertTrue(np.all(np.isfinite(history.history[name])))
        # On one batch, evaluate's total is the weighted sum of its terms
        # and the perplexity is exp(NLL).
        result = lm.evaluate(
            x, y, sample_weight=sw, verbose=0, return_dict=True
        )
        expected = (
            0.7 * result["nll"]
            + 0.5 * result["reconstruction_loss"]
            + 0.25 * result["stft_loss"]
            + 0.01 * result["prior_loss"]
        )
        self.assertAllClose(result["loss"], expected, rtol=1e-5)
        self.assertAllClose(
            result["perplexity"], np.exp(result["nll"]), rtol=1e-5
        )

    def test_only_weighted_terms_are_computed_and_logged(self):
        x, y, sw = lm_batch()
        # Default weights: the NLL alone; the recorded vector is zeros (the
        # forward pass computed no term).
        lm = tiny_lm()
        lm.compile()
        result = lm.evaluate(
            x, y, sample_weight=sw, verbose=0, return_dict=True
        )
        self.assertEqual([n for n in result if n.endswith("_loss")], [])
        self.assertAllClose(result["loss"], result["nll"], rtol=1e-6)
        lm(x)
        self.assertAllClose(lm.losses[0], np.zeros(3), atol=0, rtol=0)
        # The STFT term alone: logged (fit logs the same trackers, see
        # `test_fit_logs_every_term_and_weights_them`), and what
        # `auxiliary_terms` computes on demand.
        lm = tiny_lm(stft_weight=0.25)
        lm.compile()
        result = lm.evaluate(
            x, y, sample_weight=sw, verbose=0, return_dict=True
        )
        self.assertEqual(
            [n for n in result if n.endswith("_loss")], ["stft_loss"]
        )
        lm(x)
        (vector,) = lm.losses
        self.assertEqual(float(vector[0]), 0.0)
        self.assertEqual(float(vector[2]), 0.0)
        outputs = lm.backbone(x, return_auxiliary_outputs=True)
        terms = lm.auxiliary_terms(
            outputs["auxiliary_outputs"], x["padding_mask"], ("stft",)
        )
        self.assertEqual(list(terms), ["stft"])
        self.assertGreater(float(terms["stft"]), 0.0)
        self.assertAllClose(vector[1], terms["stft"], rtol=1e-5)
        with self.assertRaisesRegex(ValueError, "`terms` must be a subset"):
            lm.auxiliary_terms(outputs["auxiliary_outputs"], terms=("nll",))

    def test_compute_loss_needs_the_forward_pass_terms(self):
        lm = tiny_lm(nll_weight=0.7, **ALL_TERMS)
        lm.compile()
        x, y, sw = lm_batch()
        # Right after a call of the model: its weighted terms, as evaluate.
        y_pred = lm(x)
        loss = lm.compute_loss(x, y, y_pred, sw, training=False)
        result = lm.evaluate(
            x, y, sample_weight=sw, verbose=0, return_dict=True
        )
        self.assertAllClose(loss, result["loss"], rtol=1e-5)
        # Without one, the total would silently lose R, S and P.
        fresh = tiny_lm(**ALL_TERMS)
        fresh.compile()
        with self.assertRaisesRegex(ValueError, "no auxiliary terms"):
            fresh.compute_loss(x, y, y_pred, sw)

    def test_reconstruction_term_matches_its_definition(self):
        lm = tiny_lm(backbone={"num_layers": 1})
        x, y, sw = lm_batch()
        x["padding_mask"][:, 6:] = 0
        auxiliary_outputs = lm.backbone(x, return_auxiliary_outputs=True)[
            "auxiliary_outputs"
        ]
        target = auxiliary_outputs[0]["target"]
        reconstruction = auxiliary_outputs[0]["reconstruction"]
        mask = x["padding_mask"][..., None]
        error = (
            ops.convert_to_numpy(reconstruction) - ops.convert_to_numpy(target)
        ) ** 2
        expected = (error * mask).sum() / (mask.sum() * error.shape[-1])
        terms = lm.auxiliary_terms(auxiliary_outputs, x["padding_mask"])
        self.assertAllClose(terms["reconstruction"], expected, rtol=1e-5)

    def test_zero_weight_terms_pass_no_gradient(self):
        # The priors are reached by the prior term only: with its weight at
        # 0 they must not move; with a positive weight they must.
        x, y, sw = lm_batch()
        for prior_weight, should_move in ((0.0, False), (1.0, True)):
            lm = tiny_lm(stft_weight=1.0, prior_weight=prior_weight)
            lm.compile(optimizer=keras.optimizers.SGD(0.1))
            before = ops.convert_to_numpy(lm.backbone.blocks[0].prior.means)
            lm.fit(x, y, sample_weight=sw, epochs=2, verbose=0)
            after = ops.convert_to_numpy(lm.backbone.blocks[0].prior.means)
            self.assertEqual(not np.allclose(before, after), should_move)

    def test_saved_model(self):
        x, _, _ = lm_batch()
        self.run_model_saving_test(
            cls=SDGMCausalLM,
            init_kwargs={
                "backbone": SDGMBackbone(**TINY_BACKBONE),
                **ALL_TERMS,
            },
            input_data=x,
            atol=0,
            rtol=0,
        )

    def test_loaded_model_keeps_config_and_trains_on(self):
        lm = tiny_lm(**ALL_TERMS)
        lm.compile()
        x, y, sw = lm_batch()
        lm.fit(x, y, sample_weight=sw, verbose=0)
        path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(path)
        restored = keras.models.load_model(path)
        self.assertEqual(restored.get_config()["stft_weight"], 0.25)
        self.assertAllClose(restored(x), lm(x), atol=0, rtol=0)
        history = restored.fit(x, y, sample_weight=sw, verbose=0)
        self.assertIn("stft_loss", history.history)

    def test_random_position_offsets_train_and_reload(self):
        lm = tiny_lm(
            backbone={
                "dictionary_type": "separable_frequency",
                "max_position_offset": 24,
            }
        )
        lm.compile()
        x, y, sw = lm_batch()
        history = lm.fit(x, y, sample_weight=sw, epochs=2, verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        # Training calls draw offsets; inference always starts at 0.
        trained = [ops.convert_to_numpy(lm(x, training=True)) for _ in range(4)]
        self.assertTrue(any(not np.allclose(trained[0], t) for t in trained))
        path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(path)
        restored = keras.models.load_model(path)
        self.assertEqual(
            restored.backbone.get_config()["max_position_offset"], 24
        )
        self.assertAllClose(restored(x), lm(x), atol=0, rtol=0)

    @parameterized.named_parameters(
        ("tensorflow", "tensorflow"), ("jax", "jax")
    )
    def test_fit_with_jit_compile(self, backend):
        if keras.config.backend() != backend:
            pytest.skip(
                f"jit_compile=True is checked under {backend} only "
                "(torch.compile is not a supported target)"
            )
        lm = tiny_lm(**ALL_TERMS)
        lm.compile(jit_compile=True)
        x, y, sw = lm_batch()
        history = lm.fit(x, y, sample_weight=sw, epochs=3, verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        self.assertLess(history.history["loss"][-1], history.history["loss"][0])

    def test_mixed_precision_fit(self):
        lm = tiny_lm(backbone={"dtype": "mixed_bfloat16"}, **ALL_TERMS)
        lm.compile()
        x, y, sw = lm_batch()
        self.assertDTypeEqual(lm.backbone(x), "bfloat16")
        self.assertDTypeEqual(
            lm.backbone.blocks[0].dictionary.kernel, "float32"
        )
        history = lm.fit(x, y, sample_weight=sw, epochs=2, verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    def test_mixed_precision_matches_float32(self):
        # The same weights under float32 and mixed_bfloat16. bfloat16 rounds
        # each operation to ~2e-3 relative; through two blocks of this tiny
        # model (D=8, layer norms over 8 features) single logits move by up
        # to ~4% of the largest logit (measured: 2.7-4.1% across backends),
        # on average ~0.3%. The loss terms are computed in float32 from the
        # model's outputs and averaged over the batch: measured within
        # 4e-4 relative; the bound is 5e-3, about two bfloat16 roundings.
        float32_lm = tiny_lm(**ALL_TERMS)
        mixed_lm = tiny_lm(backbone={"dtype": "mixed_bfloat16"}, **ALL_TERMS)
        x, y, sw = lm_batch()
        float32_lm(x)
        mixed_lm(x)
        mixed_lm.set_weights(float32_lm.get_weights())
        expected = ops.convert_to_numpy(float32_lm(x))
        got = ops.convert_to_numpy(ops.cast(mixed_lm(x), "float32"))
        deviation = np.abs(got - expected) / np.abs(expected).max()
        self.assertLess(deviation.mean(), 1e-2)
        self.assertLess(deviation.max(), 0.1)
        results = []
        for lm in (float32_lm, mixed_lm):
            lm.compile()
            results.append(
                lm.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
            )
        for name in LOGGED_TERMS:
            self.assertAllClose(
                results[1][name], results[0][name], rtol=5e-3, atol=0, msg=name
            )

    def test_from_preset(self):
        lm = SDGMCausalLM.from_preset(
            "sdgm_tiny", load_weights=False, vocabulary_size=30, stft_weight=1.0
        )
        self.assertEqual(lm.backbone.vocabulary_size, 30)
        self.assertEqual(lm.stft_weight, 1.0)
        with self.assertRaisesRegex(ValueError, "load_weights=False"):
            SDGMCausalLM.from_preset("sdgm_tiny", vocabulary_size=30)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "stft_weight"):
            tiny_lm(stft_weight=-1)
        with self.assertRaisesRegex(ValueError, "stft_fft_length"):
            tiny_lm(stft_fft_length=0)
        # Keras's functional models drop unknown keywords without a word.
        with self.assertRaisesRegex(TypeError, "`stft_weigth`"):
            tiny_lm(stft_weigth=1.0)
        lm = tiny_lm()
        x, _, _ = lm_batch()
        with self.assertRaisesRegex(ValueError, r"\[0, 10\)"):
            lm({**x, "token_ids": x["token_ids"] + 10})
        with self.assertRaisesRegex(ValueError, "integer"):
            lm.predict({**x, "token_ids": x["token_ids"] * 1.0}, verbose=0)


class CausalityTest(TestCase):
    @parameterized.named_parameters(
        ("one_block_kernel_3", 1, 3, [1], False),
        ("one_block_kernel_1", 1, 1, [1], True),
        ("three_blocks_kernel_2_dilated", 3, 2, [1, 2, 4], True),
        ("three_blocks_kernel_5", 3, 5, [1, 3], True),
        ("depthwise_two_blocks", 2, 3, [1, 2, 4], True, "depthwise"),
        ("gated_two_blocks", 2, 3, [1, 2], True, "gated"),
        ("spectral_two_blocks", 2, 3, [1], True, "spectral"),
        ("spectral_one_block", 1, 2, [1], False, "spectral"),
        ("gated_spectral_two_blocks", 2, 3, [1], True, "gated_spectral"),
        ("gated_retention_two_blocks", 2, 3, [1], True, "gated_retention"),
        (
            "gated_spectral_shared_frequency_dictionary",
            2,
            3,
            [1],
            True,
            "gated_spectral",
            "shared_frequency",
        ),
        (
            "gated_spectral_separable_frequency_dictionary",
            2,
            3,
            [1],
            True,
            "gated_spectral",
            "separable_frequency",
        ),
        (
            "gated_spectral_modes_per_feature",
            2,
            3,
            [1],
            True,
            "gated_spectral",
            "separable_frequency",
            True,
        ),
        (
            "gated_spectral_data_dependent_decay",
            2,
            3,
            [1],
            True,
            "gated_spectral",
            "separable_frequency",
            False,
            True,
        ),
    )
    def test_future_tokens_do_not_change_past_logits(
        self,
        num_layers,
        kernel_size,
        dilation_rates,
        residual,
        encoder_type="dilated_convolution",
        dictionary_type="spectral",
        modes_per_feature=False,
        data_dependent_decay=False,
    ):
        lm = tiny_lm(
            backbone={
                "encoder_type": encoder_type,
                "modes_per_feature": modes_per_feature,
                "data_dependent_decay": data_dependent_decay,
                "dictionary_type": dictionary_type,
                "num_layers": num_layers,
                "kernel_size": kernel_size,
                "dilation_rates": dilation_rates,
                "residual": residual,
                "window_length": 16,
                "vocabulary_size": 20,
            }
        )
        rng = np.random.RandomState(num_layers * 10 + kernel_size)
        x = {
            "token_ids": rng.randint(0, 20, (3, 16)).astype("int32"),
            "padding_mask": np.ones((3, 16), "int32"),
        }
        base = ops.convert_to_numpy(lm(x))
        for t in (1, 5, 11, 15):
            perturbed = x["token_ids"].copy()
            perturbed[:, t:] = rng.randint(0, 20, perturbed[:, t:].shape)
            logits = ops.convert_to_numpy(lm({**x, "token_ids": perturbed}))
            self.assertLessEqual(
                np.abs(logits[:, :t] - base[:, :t]).max(), 1e-5
            )
            # And the perturbation is visible from position t on.
            self.assertGreater(np.abs(logits[:, t:] - base[:, t:]).max(), 1e-4)


CROSS_BACKEND_SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    import keras
    import numpy as np
    import keras_sdgm  # registers the classes

    inputs = dict(np.load(sys.argv[1]))
    for model_path in sys.argv[3:]:
        model = keras.models.load_model(model_path)
        name = os.path.basename(model_path) + ".npy"
        out = keras.ops.convert_to_numpy(model(inputs))
        np.save(os.path.join(sys.argv[2], name), out)
    """
)


class CrossBackendTest(TestCase):
    def test_saved_model_loads_under_another_backend(self):
        # Every token mixer and dictionary saved under this backend, loaded
        # in one process of the next backend in the cycle tensorflow -> jax
        # -> torch -> tensorflow: over the suite's three runs every backend
        # saves and every backend loads, one child process per run.
        x, _, _ = lm_batch()
        tmp = self.get_temp_dir()
        inputs_path = os.path.join(tmp, "inputs.npz")
        np.savez(inputs_path, **x)
        expected = {}
        blocks = [{"encoder_type": name} for name in ENCODER_TYPES] + [
            {"dictionary_type": name} for name in DICTIONARY_TYPES
        ]
        blocks += [
            {"encoder_type": "spectral", option: True}
            for option in ("modes_per_feature", "data_dependent_decay")
        ]
        for block in blocks:
            lm = tiny_lm(backbone=block, **ALL_TERMS)
            name = "-".join(f"{key}={value}" for key, value in block.items())
            model_path = os.path.join(tmp, f"{name}.keras")
            lm.save(model_path)
            expected[model_path] = ops.convert_to_numpy(lm(x))
        cycle = ["tensorflow", "jax", "torch"]
        loader = cycle[(cycle.index(keras.config.backend()) + 1) % 3]
        out_dir = os.path.join(tmp, loader)
        os.makedirs(out_dir)
        env = {**os.environ, "KERAS_BACKEND": loader}
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CROSS_BACKEND_SCRIPT,
                inputs_path,
                out_dir,
                *expected,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        for model_path, logits in expected.items():
            name = os.path.basename(model_path) + ".npy"
            self.assertAllClose(
                np.load(os.path.join(out_dir, name)),
                logits,
                atol=1e-5,
                rtol=1e-5,
                msg=f"{model_path} under {loader}",
            )
