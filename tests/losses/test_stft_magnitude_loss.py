import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sdgm.losses import STFTMagnitudeLoss
from tests.testing import TestCase
from tests.testing import gradients


def numpy_stft_magnitude_loss(y_true, y_pred, fft_length, frame_step):
    """SPEC section 4, written independently with NumPy in float64."""

    def magnitudes(y):  # y: (batch, length, channels)
        series = np.transpose(y, (0, 2, 1)).astype("float64")
        pad = fft_length // 2
        series = np.pad(series, [(0, 0), (0, 0), (pad, pad)])
        num_frames = 1 + (series.shape[-1] - fft_length) // frame_step
        n = np.arange(fft_length)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / fft_length)  # periodic
        frames = np.stack(
            [
                series[..., i * frame_step : i * frame_step + fft_length]
                for i in range(num_frames)
            ],
            axis=2,
        )  # (batch, channels, frames, fft_length)
        return np.abs(np.fft.rfft(frames * window, axis=-1))

    difference = magnitudes(y_pred) - magnitudes(y_true)
    return np.mean(difference**2)


class STFTMagnitudeLossTest(TestCase):
    @parameterized.product(length=[16, 128, 300], channels=[1, 8])
    def test_matches_numpy_reference(self, length, channels):
        rng = np.random.RandomState(length + channels)
        y_true = rng.randn(3, length, channels).astype("float32")
        y_pred = (y_true + 0.3 * rng.randn(3, length, channels)).astype(
            "float32"
        )
        loss = STFTMagnitudeLoss()  # the paper's fft 256, hop 64
        expected = numpy_stft_magnitude_loss(y_true, y_pred, 256, 64)
        value = float(ops.convert_to_numpy(loss(y_true, y_pred)))
        self.assertAllClose(value, expected, rtol=1e-5, atol=0)

    def test_other_frame_settings_and_2d_input(self):
        rng = np.random.RandomState(0)
        y_true = rng.randn(2, 50).astype("float32")
        y_pred = rng.randn(2, 50).astype("float32")
        loss = STFTMagnitudeLoss(fft_length=16, frame_step=4)
        expected = numpy_stft_magnitude_loss(
            y_true[..., None], y_pred[..., None], 16, 4
        )
        self.assertAllClose(loss(y_true, y_pred), expected, rtol=1e-5, atol=0)

    def test_gradient_is_finite_at_zero_magnitude(self):
        # All-zero signals have |STFT| = 0 everywhere: the exact magnitude's
        # gradient is 0/0 there.
        loss = STFTMagnitudeLoss(fft_length=16, frame_step=4)
        y_true = np.zeros((2, 20, 3), "float32")
        y_pred = keras.Variable(np.zeros((2, 20, 3), "float32"))
        (grad,) = gradients(lambda: loss(y_true, y_pred.value), [y_pred])
        self.assertTrue(np.all(np.isfinite(grad)))
        y_pred.assign(np.random.RandomState(0).randn(2, 20, 3))
        (grad,) = gradients(lambda: loss(y_true, y_pred.value), [y_pred])
        self.assertTrue(np.all(np.isfinite(grad)))
        self.assertGreater(np.abs(grad).max(), 0)

    def test_float32_under_mixed_precision(self):
        loss = STFTMagnitudeLoss(fft_length=16, frame_step=4)
        y = keras.random.normal((2, 20, 3))
        value = loss(ops.cast(y, "float16"), ops.cast(y * 0.5, "bfloat16"))
        self.assertDTypeEqual(value, "float32")
        self.assertAllClose(value, loss(y, y * 0.5), rtol=1e-2)

    def test_usable_in_compile(self):
        inputs = keras.Input((24, 2))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(
            optimizer="sgd", loss=STFTMagnitudeLoss(fft_length=8, frame_step=2)
        )
        x = np.random.RandomState(0).randn(8, 24, 2).astype("float32")
        history = model.fit(x, x, epochs=3, verbose=0)
        losses = history.history["loss"]
        self.assertTrue(np.all(np.isfinite(losses)))
        self.assertLess(losses[-1], losses[0])

    def test_serialization(self):
        loss = STFTMagnitudeLoss(fft_length=32, frame_step=8)
        revived = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertEqual((revived.fft_length, revived.frame_step), (32, 8))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "window"):
            STFTMagnitudeLoss(window="hamming")
        with self.assertRaisesRegex(ValueError, "fft_length"):
            STFTMagnitudeLoss(fft_length=0)
        with self.assertRaisesRegex(ValueError, "float32"):
            STFTMagnitudeLoss(dtype="float16")
        with self.assertRaisesRegex(ValueError, "shape"):
            STFTMagnitudeLoss()(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))
