import math

import keras
import numpy as np
from keras import ops

from keras_sdgm.layers import FrequencyBandInitializer
from keras_sdgm.layers import SpectralDictionary
from tests.testing import TestCase
from tests.testing import gradients


def numpy_atoms(layer, positions):
    # In float64 throughout (a Python float times a float32 array stays
    # float32 under NumPy 2).
    a = ops.convert_to_numpy(layer.amplitude).astype("float64")
    f = ops.convert_to_numpy(layer.frequency).astype("float64")
    phi = ops.convert_to_numpy(layer.phase).astype("float64")
    t = np.asarray(positions, "float64")[:, None, None]
    return a * np.sin(2 * np.pi * f * t / layer.window_length + phi)


class SpectralDictionaryTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            cls=SpectralDictionary,
            init_kwargs={"num_atoms": 4, "hidden_dim": 6, "window_length": 8},
            input_data=keras.random.normal((2, 5, 4)),
            expected_output_shape=(2, 5, 6),
            expected_num_trainable_weights=3,
        )

    def test_config_of_the_older_key_loads(self):
        config = SpectralDictionary(
            num_atoms=3, hidden_dim=5, window_length=16
        ).get_config()
        config["sequence_length"] = config.pop("window_length")
        layer = SpectralDictionary.from_config(config)
        self.assertEqual(layer.window_length, 16)

    def test_reconstruction_matches_formula(self):
        layer = SpectralDictionary(num_atoms=3, hidden_dim=5, window_length=16)
        coefficients = np.random.RandomState(0).randn(2, 7, 3).astype("float32")
        output = ops.convert_to_numpy(layer(coefficients, start_index=4))
        atoms = numpy_atoms(layer, np.arange(4, 11))  # (L, K, D)
        expected = np.einsum("blk,lkd->bld", coefficients, atoms)
        self.assertAllClose(output, expected, atol=1e-5, rtol=1e-5)

    def test_positions_are_absolute(self):
        # A prefix and the same prefix extended see the same atoms, and a
        # single step at position t equals row t of the full evaluation.
        layer = SpectralDictionary(num_atoms=4, hidden_dim=3, window_length=8)
        coefficients = keras.random.normal((1, 20, 4))
        full = ops.convert_to_numpy(layer(coefficients))
        prefix = ops.convert_to_numpy(layer(coefficients[:, :9]))
        self.assertAllClose(full[:, :9], prefix, atol=1e-6)
        for t in (0, 7, 19):
            step = layer(coefficients[:, t : t + 1], start_index=t)
            self.assertAllClose(full[:, t : t + 1], step, atol=1e-5)
        # A tensor start index, as a compiled decoding loop passes it.
        step = layer(coefficients[:, 7:8], start_index=ops.convert_to_tensor(7))
        self.assertAllClose(full[:, 7:8], step, atol=1e-5)

    def test_chunked_mixing_equals_one_product_with_the_atoms(self):
        # `call` mixes chunk by chunk with angle addition (the last chunk
        # padded); the reference multiplies the coefficients by the directly
        # evaluated atoms in one product. Outputs and gradients (all three
        # weights and the coefficients) must agree, for several chunk sizes
        # including one chunk, and far from position 0.
        rng = np.random.default_rng(0)
        coefficients = keras.Variable(
            rng.normal(size=(3, 40, 6)).astype("float32")
        )
        weights = ops.convert_to_tensor(
            rng.normal(size=(3, 40, 10)).astype("float32")
        )
        for chunk_size, start in ((16, 0), (7, 3000), (64, 130)):
            layer = SpectralDictionary(
                num_atoms=6,
                hidden_dim=10,
                window_length=32,
                amplitude_initializer="random_normal",
                chunk_size=chunk_size,
            )
            layer.build((None, None, 6))
            variables = layer.trainable_variables + [coefficients]

            def chunked():
                return ops.sum(
                    layer(coefficients.value, start_index=start) * weights
                )

            def reference():
                atoms = layer.atoms(start, 40)
                mixed = ops.einsum("blk,lkd->bld", coefficients.value, atoms)
                return ops.sum(mixed * weights)

            self.assertAllClose(
                ops.convert_to_numpy(chunked()),
                ops.convert_to_numpy(reference()),
                atol=1e-5,
                rtol=1e-5,
            )
            for name, got, expected in zip(
                ["amplitude", "frequency", "phase", "coefficients"],
                gradients(chunked, variables),
                gradients(reference, variables),
            ):
                scale = np.abs(expected).max()
                self.assertAllClose(
                    got / scale,
                    expected / scale,
                    atol=1e-5,
                    rtol=0,
                    msg=f"d/d{name}, chunk_size={chunk_size}, start={start}",
                )

    def test_atoms_far_beyond_training_window_are_accurate(self):
        # Unit amplitudes and frequencies across [0, L0), twice the initial
        # band: a plain float32 angle would be off by up to ~0.03 rad at
        # position 500,000 (about 250,000 cycles).
        layer = SpectralDictionary(
            num_atoms=8, hidden_dim=16, window_length=128
        )
        layer.build((None, None, 8))
        layer.amplitude.assign(np.ones((8, 16), "float32"))
        layer.frequency.assign(
            np.random.default_rng(0).uniform(0, 128, (8, 16)).astype("float32")
        )
        for start in (0, 4000, 16000, 100_000, 500_000):
            atoms = ops.convert_to_numpy(layer.atoms(start, 3))
            expected = numpy_atoms(layer, [start, start + 1, start + 2])
            self.assertAllClose(
                atoms, expected, atol=1e-4, rtol=0, msg=f"start {start}"
            )

    def test_default_frequencies_tile_the_band(self):
        layer = SpectralDictionary(num_atoms=8, hidden_dim=64, window_length=32)
        layer.build((None, None, 8))
        f = ops.convert_to_numpy(layer.frequency)
        nyquist = 32 / 2
        for k in range(8):
            self.assertGreaterEqual(f[k].min(), k * nyquist / 8)
            self.assertLess(f[k].max(), (k + 1) * nyquist / 8)
        phase = ops.convert_to_numpy(layer.phase)
        self.assertTrue(np.all((phase >= 0) & (phase < 2 * math.pi)))

    def test_frequency_initializer_serializes(self):
        init = FrequencyBandInitializer(max_frequency=10.0, seed=3)
        revived = keras.initializers.deserialize(
            keras.initializers.serialize(init)
        )
        self.assertEqual(revived.max_frequency, 10.0)
        self.assertAllClose(init((2, 4)), revived((2, 4)))

    def test_mixed_precision_evaluates_atoms_in_float32(self):
        layer = SpectralDictionary(
            num_atoms=2, hidden_dim=2, window_length=8, dtype="mixed_bfloat16"
        )
        out = layer(keras.random.normal((1, 4, 2)), start_index=3000)
        self.assertDTypeEqual(out, "bfloat16")
        self.assertDTypeEqual(layer.atoms(3000, 4), "float32")

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "num_atoms"):
            SpectralDictionary(num_atoms=0, hidden_dim=2, window_length=8)
        with self.assertRaisesRegex(ValueError, "window_length"):
            SpectralDictionary(num_atoms=2, hidden_dim=2, window_length=-1)
        with self.assertRaisesRegex(ValueError, "hidden_dim"):
            SpectralDictionary(num_atoms=2, hidden_dim=2.5, window_length=8)
        with self.assertRaisesRegex(ValueError, "chunk_size"):
            SpectralDictionary(
                num_atoms=2, hidden_dim=2, window_length=8, chunk_size=0
            )
