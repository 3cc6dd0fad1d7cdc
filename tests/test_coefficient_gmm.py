import os

import keras
import numpy as np
from keras import ops

import keras_sdgm
from keras_sdgm.coefficient_gmm import collect_coefficients
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from tests.fixtures import TINY_BACKBONE
from tests.testing import TestCase


def tiny_lm():
    backbone = SDGMBackbone(
        **{
            **TINY_BACKBONE,
            "vocabulary_size": 30,
            "num_mixture_components": 3,
        }
    )
    return SDGMCausalLM(backbone)


def windows(count=40, length=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 30, (count, length)).astype("int32")


class FitCoefficientGMMTest(TestCase):
    def test_fit_stores_the_sklearn_mixture_in_each_prior(self):
        lm = tiny_lm()
        batches = np.array_split(windows(), 5)
        samples = collect_coefficients(lm.backbone, batches, 10_000, verbose=0)
        before = [
            float(ops.mean(block.prior.log_prob(s)))
            for block, s in zip(lm.backbone.blocks, samples)
        ]
        mixtures = keras_sdgm.fit_coefficient_gmm(lm, batches, verbose=0)
        self.assertLen(mixtures, 2)
        for block, mixture, s, old in zip(
            lm.backbone.blocks, mixtures, samples, before
        ):
            self.assertEqual(s.shape, (320, 4))
            self.assertAllClose(block.prior.means, mixture.means_, atol=1e-6)
            # The prior now scores the coefficients as sklearn does (up to
            # the prior's minimum scale) and far better than before.
            log_prob = ops.convert_to_numpy(block.prior.log_prob(s))
            self.assertAllClose(
                log_prob.mean(), mixture.score(s), rtol=0.05, atol=0.05
            )
            self.assertGreater(log_prob.mean(), old + 1.0)

    def test_padding_and_max_samples(self):
        lm = tiny_lm()
        token_ids = windows(count=4)
        padding_mask = np.ones_like(token_ids)
        padding_mask[:, 5:] = 0
        batch = ({"token_ids": token_ids, "padding_mask": padding_mask}, None)
        samples = collect_coefficients(lm.backbone, [batch], 100, verbose=0)
        self.assertEqual(samples[0].shape, (20, 4))  # 4 rows x 5 real
        samples = collect_coefficients(
            lm.backbone, [batch, batch], 7, verbose=0
        )
        self.assertEqual(samples[1].shape, (7, 4))

    def test_fitted_prior_is_saved_with_the_model(self):
        lm = tiny_lm()
        keras_sdgm.fit_coefficient_gmm(lm, [windows()], verbose=0)
        path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(path)
        restored = keras.saving.load_model(path)
        for block, other in zip(lm.backbone.blocks, restored.backbone.blocks):
            self.assertAllClose(block.prior.means, other.prior.means)
            self.assertAllClose(block.prior.log_scales, other.prior.log_scales)

    def test_invalid_arguments(self):
        lm = tiny_lm()
        with self.assertRaisesRegex(ValueError, "num_mixture_components"):
            keras_sdgm.fit_coefficient_gmm(
                lm, [windows()], num_mixture_components=5
            )
        with self.assertRaisesRegex(ValueError, "covariance_type"):
            keras_sdgm.fit_coefficient_gmm(
                lm, [windows()], covariance_type="full"
            )
        with self.assertRaisesRegex(ValueError, "fewer than"):
            keras_sdgm.fit_coefficient_gmm(
                lm, [windows(count=1)[:, :2]], verbose=0
            )
        with self.assertRaisesRegex(ValueError, "shape"):
            keras_sdgm.fit_coefficient_gmm(lm, [np.zeros((2, 3, 4), "int32")])
