import numpy as np
from keras import ops

from keras_sdgm.layers import SpectralCoefficientEncoder
from tests.testing import TestCase


def float64_weights(encoder):
    """The encoder's weights by role, float64 (the input layers it has)."""
    weights = {
        "frequency": encoder.frequency,
        "decay": encoder.decay,
        "real": encoder.read_out_real,
        "imaginary": encoder.read_out_imaginary,
        "w": encoder.projection.kernel,
        "b": encoder.projection.bias,
    }
    for name, layer in (("w_in", "mode_input"), ("w_r", "decay_input")):
        if hasattr(encoder, layer):
            weights[name] = getattr(encoder, layer).kernel
    return {
        name: ops.convert_to_numpy(w).astype("float64")
        for name, w in weights.items()
    }


def polar_modes(encoder, weights):
    """Amplitude `a`, phase `phi` (the read-out in polar form), `r` and
    `omega` of the static modes."""
    amplitude = np.hypot(weights["real"], weights["imaginary"])
    phase = np.arctan2(weights["real"], weights["imaginary"])
    r = np.exp(-np.log1p(np.exp(weights["decay"])))
    omega = 2 * np.pi * weights["frequency"] / encoder.window_length
    return amplitude, phase, r, omega


def projected(encoder, y, h, weights):
    """The coefficients `act((y + h) W + b)`."""
    return ops.convert_to_numpy(
        encoder.activation(
            ops.convert_to_tensor(
                (y + h) @ weights["w"] + weights["b"], "float32"
            )
        )
    )


def numpy_spectral(encoder, x):
    """The layer's definition as a sum over lags (SPEC section 8), float64.

    The depthwise convolutions are zeroed by the caller, so `y = x`; then
    `h[t, d] = sum_{s <= t} sum_m u[s, m] a[m, d] r_m^(t - s)
    sin(omega_m (t - s) + phi[m, d])` with `u = gamma * (x W_in)`.
    """
    weights = float64_weights(encoder)
    amplitude, phase, r, omega = polar_modes(encoder, weights)
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
    return projected(encoder, y, h, weights)


def numpy_feature_modes(encoder, x):
    """The definition with modes per feature, as a sum over lags, float64.

    With `y = x` (depthwise convolutions zeroed by the caller): `h[t, d] =
    sum_{s <= t} y[s, d] sum_m gamma_m a[m, d] r_m^(t - s) sin(omega_m (t -
    s) + phi[m, d])`.
    """
    weights = float64_weights(encoder)
    amplitude, phase, r, omega = polar_modes(encoder, weights)
    gamma = np.sqrt(1 - r**2)
    y = np.asarray(x, "float64")
    length = y.shape[1]
    tau = np.arange(length)[:, None, None]  # (lag, m, d)
    kernel = np.sum(
        (gamma * r ** tau[..., 0])[..., None]
        * amplitude
        * np.sin(omega[:, None] * tau + phase),
        axis=1,
    )  # (lag, d)
    h = np.zeros_like(y)
    for t in range(length):
        h[:, t] = np.sum(kernel[t::-1] * y[:, : t + 1], axis=1)
    return projected(encoder, y, h, weights)


def numpy_selective(encoder, x):
    """The data-dependent decay's recurrence, step by step, float64.

    With `y = x`: `z[t] = r[t] e^{i omega} z[t - 1] + gamma[t] u[t]`, `u =
    x W_in`, `r[t] = exp(-softplus(rho + x[t] W_r))`, `gamma = sqrt(1 -
    r**2)`; `h = B_re Re z + B_im Im z`.
    """
    weights = float64_weights(encoder)
    _, _, _, omega = polar_modes(encoder, weights)
    y = np.asarray(x, "float64")
    r = np.exp(-np.log1p(np.exp(weights["decay"] + y @ weights["w_r"])))
    u = np.sqrt(1 - r**2) * (y @ weights["w_in"])
    z = np.zeros(u.shape[:1] + u.shape[2:], "complex128")
    h = np.zeros_like(y)
    for t in range(y.shape[1]):
        z = r[:, t] * np.exp(1j * omega) * z + u[:, t]
        h[:, t] = z.real @ weights["real"] + z.imag @ weights["imaginary"]
    return projected(encoder, y, h, weights)


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

    def test_modes_per_feature_match_their_definition(self):
        # 300 positions: chunks of 128 by default (three, the last one
        # padded), and of 16 (19 chunks); slow modes reach across them.
        x = np.random.RandomState(3).randn(2, 300, 6).astype("float32")
        one = spectral_encoder(300, num_modes=4, modes_per_feature=True)
        self.assertEqual(one.chunk_size_for(300), 128)
        expected = numpy_feature_modes(one, x)
        scale = np.abs(expected).max()
        self.assertAllClose(one(x), expected, atol=1e-5 * scale, rtol=0)
        other = spectral_encoder(
            300, num_modes=4, modes_per_feature=True, chunk_size=16
        )
        other.set_weights(one.get_weights())
        self.assertAllClose(other(x), expected, atol=1e-5 * scale, rtol=0)

    def test_data_dependent_decay_matches_its_recurrence(self):
        # 150 positions in chunks of 16 (10 chunks, the last one padded)
        # and of 7; the decays move with the input by up to ~3 nats.
        x = np.random.RandomState(4).randn(2, 150, 6).astype("float32")
        for chunk_size in (16, 7):
            encoder = spectral_encoder(
                150,
                num_modes=4,
                chunk_size=chunk_size,
                data_dependent_decay=True,
            )
            encoder.decay_input.kernel.assign(
                np.random.RandomState(5).randn(6, 4).astype("float32")
            )
            expected = numpy_selective(encoder, x)
            scale = np.abs(expected).max()
            self.assertAllClose(encoder(x), expected, atol=1e-5 * scale, rtol=0)

    def test_data_dependent_decay_starts_as_the_static_one(self):
        # `W_r` starts at zeros: the same weights give the same output as
        # the static decays, through the other computation.
        x = np.random.RandomState(6).randn(2, 70, 6).astype("float32")
        static = spectral_encoder(70, num_modes=4)
        selective = spectral_encoder(70, num_modes=4, data_dependent_decay=True)
        self.assertAllClose(
            ops.convert_to_numpy(selective.decay_input.kernel), np.zeros((6, 4))
        )
        # Every weight of the static encoder, by name; W_r stays zeros.
        values = {w.path.split("/", 1)[1]: w for w in static.weights}
        for weight in selective.weights:
            name = weight.path.split("/", 1)[1]
            if name != "decay_input/kernel":
                weight.assign(values[name])
        self.assertAllClose(selective(x), static(x), atol=1e-5, rtol=0)

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
        # Modes per feature: the whole length, up to 128 positions.
        per_feature = spectral_encoder(16, modes_per_feature=True)
        self.assertEqual(
            [per_feature.chunk_size_for(length) for length in lengths],
            [1, 1, 128, 128, 128, 128, 128, 128],
        )
        self.assertEqual(per_feature.chunk_size_for(None), 128)

    def test_state_is_the_modes_whatever_the_context(self):
        encoder = spectral_encoder(40, num_modes=3, kernel_size=3)
        x = np.random.RandomState(2).randn(2, 40, 6).astype("float32")
        for position in (1, 39):
            _, cache = encoder(x, cache_update_index=position)
            # The convolution's two frames, then 3 complex modes.
            self.assertEqual(
                [tuple(state.shape) for state in cache], [(2, 2, 6), (2, 6)]
            )
        # Modes per feature: 3 complex modes for each of the 6 features.
        encoder = spectral_encoder(40, num_modes=3, modes_per_feature=True)
        _, cache = encoder(x, cache_update_index=39)
        self.assertEqual(
            [tuple(state.shape) for state in cache], [(2, 2, 6), (2, 6, 6)]
        )
        self.assertEqual(
            [tuple(state.shape) for state in encoder.initial_cache(2)],
            [(2, 2, 6), (2, 6, 6)],
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
        # Modes per feature: no mode inputs, the rest unchanged.
        per_feature = SpectralCoefficientEncoder(
            8,
            window_length=32,
            num_modes=4,
            dilation_rates=[1],
            modes_per_feature=True,
        )
        per_feature.build((None, None, 16))
        self.assertEqual(
            per_feature.count_params(), encoder.count_params() - 16 * 4
        )

    def test_invalid_arguments(self):
        for name in ("window_length", "num_modes", "chunk_size"):
            arguments = {"window_length": 8, name: 0}
            with self.assertRaisesRegex(ValueError, name):
                SpectralCoefficientEncoder(4, **arguments)
        with self.assertRaisesRegex(ValueError, "modes_per_feature"):
            SpectralCoefficientEncoder(
                4, window_length=8, modes_per_feature="yes"
            )
        with self.assertRaisesRegex(ValueError, "data_dependent_decay"):
            SpectralCoefficientEncoder(
                4,
                window_length=8,
                modes_per_feature=True,
                data_dependent_decay=True,
            )
