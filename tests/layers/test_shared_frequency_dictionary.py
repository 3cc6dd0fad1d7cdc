import math

import keras
import numpy as np
from keras import ops

from keras_sdgm.layers import SeparableFrequencyDictionary
from keras_sdgm.layers import SharedFrequencyDictionary
from tests.testing import TestCase
from tests.testing import gradients


def numpy_atoms(layer, positions):
    """`a[k, d] sin(2 pi f[k, d] t / L0 + phi[k, d])` in float64.

    `f[k, d]` is `f[k]` (shared) or `f[k] + g[d]` (separable), from the
    weights themselves.
    """
    a = ops.convert_to_numpy(layer.amplitude).astype("float64")
    f = ops.convert_to_numpy(layer.frequency).astype("float64")[:, None]
    if hasattr(layer, "feature_frequency"):
        g = ops.convert_to_numpy(layer.feature_frequency).astype("float64")
        f = f + g[None]
    phi = ops.convert_to_numpy(layer.phase).astype("float64")
    t = np.asarray(positions, "float64")[:, None, None]
    return a * np.sin(2 * np.pi * f * t / layer.window_length + phi)


class SharedFrequencyDictionaryTest(TestCase):
    layer_class = SharedFrequencyDictionary
    num_weights = 3
    # Amplitudes of order 1, so that tolerances are relative to 1.
    unit_amplitudes = {"amplitude_initializer": "random_normal"}
    matmul_flops_per_atom_and_feature = 4

    def test_layer_basics(self):
        self.run_layer_test(
            cls=self.layer_class,
            init_kwargs={"num_atoms": 4, "hidden_dim": 6, "window_length": 8},
            input_data=keras.random.normal((2, 5, 4)),
            expected_output_shape=(2, 5, 6),
            expected_num_trainable_weights=self.num_weights,
        )

    def test_one_frequency_per_atom_tiles_the_band(self):
        layer = self.layer_class(num_atoms=8, hidden_dim=5, window_length=32)
        layer.build((None, None, 8))
        self.assertEqual(tuple(layer.frequency.shape), (8,))
        self.assertEqual(tuple(layer.amplitude.shape), (8, 5))
        self.assertEqual(tuple(layer.phase.shape), (8, 5))
        f = ops.convert_to_numpy(layer.frequency)
        nyquist = 32 / 2
        for k in range(8):
            self.assertGreaterEqual(f[k], k * nyquist / 8)
            self.assertLess(f[k], (k + 1) * nyquist / 8)
        phase = ops.convert_to_numpy(layer.phase)
        self.assertTrue(np.all((phase >= 0) & (phase < 2 * math.pi)))

    def test_reconstruction_matches_formula(self):
        # Far from position 0 too, where a plain float32 angle drifts (the
        # exact reduction holds below 2**12 windows: 524,288 for L0=128).
        layer = self.layer_class(
            num_atoms=3,
            hidden_dim=5,
            window_length=128,
            **self.unit_amplitudes,
        )
        coefficients = np.random.RandomState(0).randn(2, 7, 3).astype("float32")
        for start in (0, 4, 4000, 16000, 500_000):
            output = ops.convert_to_numpy(
                layer(coefficients, start_index=start)
            )
            atoms = numpy_atoms(layer, np.arange(start, start + 7))
            expected = np.einsum("blk,lkd->bld", coefficients, atoms)
            self.assertAllClose(
                output, expected, atol=1e-5, rtol=0, msg=f"start {start}"
            )
            self.assertAllClose(layer.atoms(start, 7), atoms, atol=1e-5, rtol=0)

    def test_positions_are_absolute(self):
        layer = self.layer_class(num_atoms=4, hidden_dim=3, window_length=8)
        coefficients = keras.random.normal((1, 20, 4))
        full = ops.convert_to_numpy(layer(coefficients))
        prefix = ops.convert_to_numpy(layer(coefficients[:, :9]))
        self.assertAllClose(full[:, :9], prefix, atol=1e-6)
        for t in (0, 7, 19):
            step = layer(coefficients[:, t : t + 1], start_index=t)
            self.assertAllClose(full[:, t : t + 1], step, atol=1e-6)
        step = layer(coefficients[:, 7:8], start_index=ops.convert_to_tensor(7))
        self.assertAllClose(full[:, 7:8], step, atol=1e-6)

    def test_gradients_equal_the_reference_evaluation(self):
        # `call` multiplies modulated coefficients by a read-out; the
        # reference multiplies the coefficients by the evaluated atoms.
        rng = np.random.default_rng(0)
        coefficients = keras.Variable(
            rng.normal(size=(3, 40, 6)).astype("float32")
        )
        weights = ops.convert_to_tensor(
            rng.normal(size=(3, 40, 10)).astype("float32")
        )
        layer = self.layer_class(
            num_atoms=6,
            hidden_dim=10,
            window_length=32,
            **self.unit_amplitudes,
        )
        layer.build((None, None, 6))
        variables = layer.trainable_variables + [coefficients]
        start = 3000

        def fast():
            return ops.sum(
                layer(coefficients.value, start_index=start) * weights
            )

        def reference():
            atoms = layer.atoms(start, 40)
            mixed = ops.einsum("blk,lkd->bld", coefficients.value, atoms)
            return ops.sum(mixed * weights)

        self.assertAllClose(fast(), reference(), atol=1e-4, rtol=1e-5)
        names = [v.name for v in layer.trainable_variables]
        for name, got, expected in zip(
            names + ["coefficients"],
            gradients(fast, variables),
            gradients(reference, variables),
        ):
            scale = np.abs(expected).max()
            self.assertAllClose(
                got / scale, expected / scale, atol=1e-5, rtol=0, msg=name
            )

    def test_mixed_precision_evaluates_angles_in_float32(self):
        layer = self.layer_class(
            num_atoms=2, hidden_dim=2, window_length=8, dtype="mixed_bfloat16"
        )
        out = layer(keras.random.normal((1, 4, 2)), start_index=3000)
        self.assertDTypeEqual(out, "bfloat16")
        self.assertDTypeEqual(layer.atoms(3000, 4), "float32")

    def test_flops_per_token(self):
        layer = self.layer_class(num_atoms=4, hidden_dim=6, window_length=8)
        self.assertEqual(
            layer.flops_per_token(),
            self.matmul_flops_per_atom_and_feature * 4 * 6,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "num_atoms"):
            self.layer_class(num_atoms=0, hidden_dim=2, window_length=8)
        with self.assertRaisesRegex(ValueError, "window_length"):
            self.layer_class(num_atoms=2, hidden_dim=2, window_length=-1)
        with self.assertRaisesRegex(ValueError, "hidden_dim"):
            self.layer_class(num_atoms=2, hidden_dim=2.5, window_length=8)


class SeparableFrequencyDictionaryTest(SharedFrequencyDictionaryTest):
    layer_class = SeparableFrequencyDictionary
    num_weights = 4
    unit_amplitudes = {"amplitude_initializer": "random_normal"}
    matmul_flops_per_atom_and_feature = 8

    def test_every_atom_and_feature_has_its_own_frequency(self):
        layer = SeparableFrequencyDictionary(
            num_atoms=8, hidden_dim=5, window_length=32
        )
        layer.build((None, None, 8))
        f = ops.convert_to_numpy(layer.frequency)
        g = ops.convert_to_numpy(layer.feature_frequency)
        self.assertEqual(g.shape, (5,))
        # Each feature's offset within one slice of the band (32 / 2 / 8 =
        # 2 cycles per window), and not all the same.
        self.assertTrue(np.all((g >= 0) & (g < 2)))
        self.assertGreater(np.ptp(g), 0)
        frequencies = ops.convert_to_numpy(layer.atom_frequencies())
        self.assertAllClose(frequencies, f[:, None] + g[None], atol=0)

    def test_zero_feature_frequencies_give_the_shared_atoms(self):
        kwargs = {"num_atoms": 3, "hidden_dim": 4, "window_length": 16}
        separable = SeparableFrequencyDictionary(
            feature_frequency_initializer="zeros", **kwargs
        )
        shared = SharedFrequencyDictionary(**kwargs)
        separable.build((None, None, 3))
        shared.build((None, None, 3))
        shared.set_weights(separable.get_weights()[:3])
        coefficients = keras.random.normal((2, 9, 3))
        self.assertAllClose(
            separable(coefficients, start_index=40),
            shared(coefficients, start_index=40),
            atol=1e-6,
        )
