import keras
from keras import ops

from keras_sdgm.layers import CoefficientEncoder
from tests.testing import TestCase


class CoefficientEncoderTest(TestCase):
    def test_receptive_field(self):
        encoder = CoefficientEncoder(
            8, kernel_size=3, dilation_rates=[1, 2, 4, 8, 16, 32]
        )
        self.assertEqual(encoder.receptive_field, 127)

    def test_activation_is_configurable(self):
        encoder = CoefficientEncoder(3, activation="relu")
        out = ops.convert_to_numpy(encoder(keras.random.normal((2, 9, 4))))
        self.assertGreaterEqual(out.min(), 0.0)
        config = encoder.get_config()
        self.assertEqual(config["activation"], "relu")
