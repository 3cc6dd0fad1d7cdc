import keras
import numpy as np
from keras import ops

from keras_sdgm.layers import SpectralDictionaryBlock
from tests.testing import TestCase


class SpectralDictionaryBlockTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            cls=SpectralDictionaryBlock,
            init_kwargs={"num_atoms": 4, "sequence_length": 8,
                         "dilation_rates": [1, 2], "intermediate_dim": 12},
            input_data={"hidden": keras.random.normal((2, 8, 6)),
                        "padding_mask": np.ones((2, 8), "int32")},
            expected_output_shape=(2, 8, 6),
            # norm 2 + encoder 4 + dictionary 3 + prior 3 + ffn norm 2
            # + ffn dense 4.
            expected_num_trainable_weights=18,
        )

    def test_paper_block_outputs_the_reconstruction(self):
        block = SpectralDictionaryBlock(num_atoms=4, sequence_length=8,
                                        residual=False)
        hidden = keras.random.normal((2, 8, 6))
        out = block(hidden)
        x, reconstruction, coefficients = block.auxiliary_outputs
        self.assertAllClose(out, reconstruction)
        self.assertEqual(tuple(coefficients.shape), (2, 8, 4))
        self.assertAllClose(x, block.input_layer_norm(hidden))

    def test_padding_is_zeroed_before_the_encoder(self):
        block = SpectralDictionaryBlock(num_atoms=4, sequence_length=8)
        mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")
        block(keras.random.normal((1, 8, 6)), padding_mask=mask)
        x = ops.convert_to_numpy(block.auxiliary_outputs[0])
        self.assertTrue(np.all(x[:, 3:] == 0))
        self.assertTrue(np.all(np.abs(x[:, :3]).sum(-1) > 0))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "intermediate_dim"):
            SpectralDictionaryBlock(4, 8, intermediate_dim=-3)
        with self.assertRaisesRegex(ValueError, "dropout"):
            SpectralDictionaryBlock(4, 8, dropout=1.5)
        with self.assertRaisesRegex(ValueError, "num_mixture_components"):
            SpectralDictionaryBlock(4, 8, num_mixture_components=0)
