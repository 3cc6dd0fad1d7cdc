import keras
import numpy as np
from keras import ops

from keras_sdgm.models import SpectralDictionaryBlock
from tests.testing import TestCase


class SpectralDictionaryBlockTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            cls=SpectralDictionaryBlock,
            init_kwargs={
                "num_atoms": 4,
                "window_length": 8,
                "dilation_rates": [1, 2],
                "intermediate_dim": 12,
            },
            input_data={
                "hidden": keras.random.normal((2, 8, 6)),
                "padding_mask": np.ones((2, 8), "int32"),
            },
            expected_output_shape=(2, 8, 6),
            # norm 2 + the default gated retention encoder 13 (per rate a
            # depthwise kernel and bias; frequencies, decays, the query,
            # key and value kernel, the output norm's two; gate and
            # projection, a kernel and a bias each) + the default static
            # dictionary 1 + prior 3 + ffn norm 2 + ffn dense 4.
            expected_num_trainable_weights=25,
        )

    def test_paper_block_outputs_the_reconstruction(self):
        block = SpectralDictionaryBlock(
            num_atoms=4, window_length=8, residual=False
        )
        hidden = keras.random.normal((2, 8, 6))
        out, auxiliary_outputs = block(hidden, return_auxiliary_outputs=True)
        x = auxiliary_outputs["target"]
        reconstruction = auxiliary_outputs["reconstruction"]
        coefficients = auxiliary_outputs["coefficients"]
        self.assertAllClose(out, reconstruction)
        self.assertEqual(tuple(coefficients.shape), (2, 8, 4))
        self.assertAllClose(x, block.input_layer_norm(hidden))

    def test_padding_is_zeroed_before_the_encoder(self):
        block = SpectralDictionaryBlock(num_atoms=4, window_length=8)
        mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")
        _, auxiliary_outputs = block(
            keras.random.normal((1, 8, 6)),
            padding_mask=mask,
            return_auxiliary_outputs=True,
        )
        x = ops.convert_to_numpy(auxiliary_outputs["target"])
        self.assertTrue(np.all(x[:, 3:] == 0))
        self.assertTrue(np.all(np.abs(x[:, :3]).sum(-1) > 0))

    def test_static_dictionary_is_the_same_at_every_position(self):
        self.run_layer_test(
            cls=SpectralDictionaryBlock,
            init_kwargs={
                "num_atoms": 4,
                "window_length": 8,
                "dictionary_type": "static",
            },
            input_data=keras.random.normal((2, 8, 6)),
            expected_output_shape=(2, 8, 6),
            # norm 2 + encoder 11 (one rate) + a (4, 6) matrix + prior 3.
            expected_num_trainable_weights=17,
        )
        block = SpectralDictionaryBlock(
            num_atoms=4, window_length=8, dictionary_type="static"
        )
        block(keras.random.normal((1, 8, 6)))
        coefficients = keras.random.normal((1, 5, 4))
        for start in (0, 3, 1000):
            hidden, _ = block._mix(
                ops.zeros((1, 5, 6)), coefficients, start, False
            )
            self.assertAllClose(
                hidden, ops.matmul(coefficients, block.dictionary.kernel)
            )

    def test_random_position_offsets_in_training_only(self):
        block = SpectralDictionaryBlock(
            num_atoms=4,
            window_length=8,
            dictionary_type="separable_frequency",
            max_position_offset=40,
            seed=3,
        )
        hidden = keras.random.normal((2, 8, 6))
        inference, auxiliary_outputs = block(
            hidden, return_auxiliary_outputs=True
        )
        self.assertAllClose(block(hidden, training=False), inference)
        coefficients = auxiliary_outputs["coefficients"]
        trained = [
            ops.convert_to_numpy(block(hidden, training=True)) for _ in range(4)
        ]
        # Each training call mixes the atoms at positions start..start+7
        # for one start in [0, 40]: exactly one of them matches.
        for output in trained:
            starts = [
                start
                for start in range(41)
                if np.allclose(
                    output,
                    ops.convert_to_numpy(
                        block._mix(hidden, coefficients, start, False)[0]
                    ),
                    atol=1e-6,
                )
            ]
            self.assertLen(starts, 1)
        self.assertGreater(len({np.round(o, 5).tobytes() for o in trained}), 1)
        config = block.get_config()
        self.assertEqual(config["max_position_offset"], 40)
        self.assertEqual(config["seed"], 3)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "dictionary_type"):
            SpectralDictionaryBlock(4, 8, dictionary_type="fourier")
        with self.assertRaisesRegex(ValueError, "encoder_type"):
            SpectralDictionaryBlock(4, 8, encoder_type="attention")
        with self.assertRaisesRegex(ValueError, "max_position_offset"):
            SpectralDictionaryBlock(4, 8, max_position_offset=-1)
        with self.assertRaisesRegex(ValueError, "static"):
            SpectralDictionaryBlock(
                4, 8, dictionary_type="static", max_position_offset=5
            )
        with self.assertRaisesRegex(ValueError, "intermediate_dim"):
            SpectralDictionaryBlock(4, 8, intermediate_dim=-3)
        with self.assertRaisesRegex(ValueError, "dropout"):
            SpectralDictionaryBlock(4, 8, dropout=1.5)
        with self.assertRaisesRegex(ValueError, "num_mixture_components"):
            SpectralDictionaryBlock(4, 8, num_mixture_components=0)
