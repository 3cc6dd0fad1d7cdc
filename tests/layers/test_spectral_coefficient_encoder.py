import numpy as np
from keras import ops

from keras_sdgm.layers import SpectralCoefficientEncoder
from tests.testing import TestCase


def numpy_spectral(encoder, x):
    """The layer's definition as a sum over lags (SPEC section 8), float64.

    The depthwise convolutions are zeroed by the caller, so `y = x`; then
    `h[t, d] = sum_{s <= t} sum_m u[s, m] a[m, d] r_m^(t - s)
    sin(omega_m (t - s) + phi[m, d])` with `u = gamma * (x W_in)`.
    """
    weights = {
        name: ops.convert_to_numpy(w).astype("float64")
        for name, w in [
            ("w_in", encoder.mode_input.kernel),
            ("frequency", encoder.frequency),
            ("decay", encoder.decay),
            ("real", encoder.read_out_real),
            ("imaginary", encoder.read_out_imaginary),
            ("w", encoder.projection.kernel),
            ("b", encoder.projection.bias),
        ]
    }
    # The read-out in polar form: amplitude a and phase phi.
    amplitude = np.hypot(weights["real"], weights["imaginary"])
    phase = np.arctan2(weights["real"], weights["imaginary"])
    r = np.exp(-np.log1p(np.exp(weights["decay"])))
    omega = 2 * np.pi * weights["frequency"] / encoder.window_length
    y = np.asarray(x, "float64")
    u = np.sqrt(1 - r**2) * (y @ weights["w_in"])
    length = y.shape[1]
    lag = np.arange(length)[:, None] - np.arange(length)[None, :]
    past = lag >= 0
    lag = np.maximum(lag, 0)[..., None, None]  # (t, s, m, d)
    kernel = (
        amplitude
        * r[:, None] ** lag
        * np.sin(omega[:, None] * lag + phase)
        * past[..., None, None]
    )
    h = np.einsum("bsm,tsmd->btd", u, kernel)
    return ops.convert_to_numpy(
        encoder.activation(
            ops.convert_to_tensor(
                (y + h) @ weights["w"] + weights["b"], "float32"
            )
        )
    )


def spectral_encoder(length, **kwargs):
    encoder = SpectralCoefficientEncoder(
        5, window_length=16, dilation_rates=[1], **kwargs
    )
    encoder.build((None, length, 6))
    for kernel in encoder.depthwise_kernels:
        kernel.assign(np.zeros(kernel.shape, "float32"))
    # Slow modes (time scales up to 1,000 positions) make distant chunks
    # matter.
    time_scales = np.geomspace(1, 1000, encoder.num_modes)
    encoder.decay.assign(np.log(np.expm1(1 / time_scales)))
    return encoder


class SpectralCoefficientEncoderTest(TestCase):
    def test_chunked_pass_matches_its_definition(self):
        # 150 positions in chunks of 16: 10 chunks, the last one padded.
        encoder = spectral_encoder(150, num_modes=4, chunk_size=16)
        x = np.random.RandomState(0).randn(2, 150, 6).astype("float32")
        expected = numpy_spectral(encoder, x)
        scale = np.abs(expected).max()
        self.assertAllClose(encoder(x), expected, atol=1e-5 * scale, rtol=0)

    def test_the_chunk_size_does_not_change_the_result(self):
        x = np.random.RandomState(1).randn(2, 70, 6).astype("float32")
        one = spectral_encoder(70, chunk_size=128)
        outputs = ops.convert_to_numpy(one(x))
        # None: chunks chosen from the length (16 positions here).
        for chunk_size in (1, 7, 64, None):
            other = spectral_encoder(70, chunk_size=chunk_size)
            other.set_weights(one.get_weights())
            self.assertAllClose(other(x), outputs, atol=1e-5, rtol=0)

    def test_default_chunks_follow_the_length(self):
        encoder = spectral_encoder(16)
        lengths = (0, 1, 128, 181, 256, 512, 1024, 8192)
        self.assertEqual(
            [encoder.chunk_size_for(length) for length in lengths],
            [16, 16, 16, 16, 32, 32, 64, 64],
        )
        # A length unknown when the computation is traced: 64.
        self.assertEqual(encoder.chunk_size_for(None), 64)
        fixed = spectral_encoder(16, chunk_size=7)
        self.assertEqual(fixed.chunk_size_for(8192), 7)

    def test_state_is_the_modes_whatever_the_context(self):
        encoder = spectral_encoder(40, num_modes=3, kernel_size=3)
        x = np.random.RandomState(2).randn(2, 40, 6).astype("float32")
        for position in (1, 39):
            _, cache = encoder(x, cache_update_index=position)
            # The convolution's two frames, then 3 complex modes.
            self.assertEqual(
                [tuple(state.shape) for state in cache], [(2, 2, 6), (2, 6)]
            )

    def test_weights_and_initial_time_scales(self):
        encoder = SpectralCoefficientEncoder(
            8, window_length=32, num_modes=4, dilation_rates=[1]
        )
        encoder.build((None, None, 16))
        # Depthwise (3 x 16 + 16), mode inputs 16 x 4, frequency and decay
        # 4 each, the two read-outs 4 x 16 each, projection 16 x 8 + 8.
        self.assertEqual(
            encoder.count_params(),
            64 + 64 + 8 + 2 * 64 + 16 * 8 + 8,
        )
        time_scales = 1 / np.log1p(np.exp(ops.convert_to_numpy(encoder.decay)))
        self.assertAllClose(time_scales, np.geomspace(1, 128, 4), rtol=1e-4)
        frequency = ops.convert_to_numpy(encoder.frequency)
        self.assertTrue(np.all((frequency >= 0) & (frequency < 16)))
        self.assertIsNone(encoder.receptive_field)

    def test_invalid_arguments(self):
        for name in ("window_length", "num_modes", "chunk_size"):
            arguments = {"window_length": 8, name: 0}
            with self.assertRaisesRegex(ValueError, name):
                SpectralCoefficientEncoder(4, **arguments)
