import keras
import numpy as np

from keras_sdgm.losses import prior_loss
from keras_sdgm.losses import reconstruction_loss
from keras_sdgm.losses import stft_loss
from tests.fixtures import ALL_TERMS
from tests.fixtures import lm_batch
from tests.fixtures import tiny_lm
from tests.losses.test_stft_magnitude_loss import numpy_stft_magnitude_loss
from tests.testing import TestCase


def masked_inputs(seed=0):
    rng = np.random.RandomState(seed)
    target = rng.randn(3, 10, 4).astype("float32")
    reconstruction = (target + 0.5 * rng.randn(3, 10, 4)).astype("float32")
    mask = np.ones((3, 10), "int32")
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    return target, reconstruction, mask


class AuxiliaryLossesTest(TestCase):
    def test_reconstruction_is_the_masked_mean_squared_error(self):
        target, reconstruction, mask = masked_inputs()
        error = ((reconstruction - target) ** 2).mean(-1)
        expected = (error * mask).sum() / mask.sum()
        self.assertAllClose(
            reconstruction_loss(target, reconstruction, mask),
            expected,
            rtol=1e-6,
        )
        self.assertAllClose(
            reconstruction_loss(target, reconstruction),
            error.mean(),
            rtol=1e-6,
        )

    def test_stft_zeroes_padding_in_both_signals(self):
        target, reconstruction, mask = masked_inputs(1)
        m = mask[..., None].astype("float32")
        expected = np.mean(
            [
                numpy_stft_magnitude_loss(
                    (target * m)[i : i + 1],
                    (reconstruction * m)[i : i + 1],
                    8,
                    2,
                )
                for i in range(3)
            ]
        )
        value = stft_loss(
            target, reconstruction, mask, fft_length=8, frame_step=2
        )
        self.assertAllClose(value, expected, rtol=1e-4)

    def test_prior_is_the_masked_negative_log_density(self):
        _, _, mask = masked_inputs()
        log_prob = np.random.RandomState(2).randn(3, 10).astype("float32")
        expected = -(log_prob * mask).sum() / mask.sum()
        self.assertAllClose(prior_loss(log_prob, mask), expected, rtol=1e-6)


class LoggedTermsTest(TestCase):
    def test_logged_terms_are_the_block_means_of_the_functions(self):
        lm = tiny_lm(**ALL_TERMS, stft_fft_length=8, stft_frame_step=2)
        lm.compile()
        x, y, sw = lm_batch()
        x["padding_mask"][1, 5:] = 0
        sw = x["padding_mask"].astype("float32")
        blocks = lm.backbone(x, return_auxiliary_outputs=True)[
            "auxiliary_outputs"
        ]
        mask = x["padding_mask"]
        expected = {"reconstruction": 0.0, "stft": 0.0, "prior": 0.0}
        for block, outputs in zip(lm.backbone.blocks, blocks):
            target, reconstruction, coefficients = (
                keras.ops.convert_to_numpy(outputs[k])
                for k in ("target", "reconstruction", "coefficients")
            )
            error = ((reconstruction - target) ** 2).mean(-1)
            expected["reconstruction"] += (error * mask).sum() / mask.sum()
            m = mask[..., None].astype("float32")
            expected["stft"] += np.mean(
                [
                    numpy_stft_magnitude_loss(
                        (target * m)[i : i + 1],
                        (reconstruction * m)[i : i + 1],
                        8,
                        2,
                    )
                    for i in range(len(target))
                ]
            )
            log_prob = keras.ops.convert_to_numpy(
                block.prior.log_prob(coefficients)
            )
            expected["prior"] += -(log_prob * mask).sum() / mask.sum()
        logged = lm.evaluate(
            x, y, sample_weight=sw, verbose=0, return_dict=True
        )
        for term, value in expected.items():
            self.assertAllClose(
                logged[f"{term}_loss"], value / len(blocks), rtol=1e-4
            )
