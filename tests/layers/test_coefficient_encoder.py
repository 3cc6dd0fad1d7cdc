import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sdgm.layers import CoefficientEncoder
from tests.testing import TestCase


class CoefficientEncoderTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            cls=CoefficientEncoder,
            init_kwargs={
                "num_atoms": 4,
                "kernel_size": 3,
                "dilation_rates": [1, 2],
            },
            input_data=keras.random.normal((2, 7, 6)),
            expected_output_shape=(2, 7, 4),
            # Two convolutions, each a kernel and a bias.
            expected_num_trainable_weights=4,
        )

    def test_receptive_field(self):
        encoder = CoefficientEncoder(
            8, kernel_size=3, dilation_rates=[1, 2, 4, 8, 16, 32]
        )
        self.assertEqual(encoder.receptive_field, 127)

    @parameterized.named_parameters(
        ("single", 2, [1]), ("dilated", 3, [1, 2, 4]), ("pointwise", 1, [1])
    )
    def test_causal_and_sees_its_receptive_field(self, kernel_size, rates):
        encoder = CoefficientEncoder(
            5, kernel_size=kernel_size, dilation_rates=rates
        )
        x = np.random.RandomState(0).randn(1, 24, 4).astype("float32")
        base = ops.convert_to_numpy(encoder(x))
        t = 12
        changed = x.copy()
        changed[:, t] += 1.0
        out = ops.convert_to_numpy(encoder(changed))
        # Nothing before t moves ...
        self.assertAllClose(base[:, :t], out[:, :t], atol=0, rtol=0)
        # ... position t does, and nothing past the receptive field does.
        self.assertGreater(np.abs(base[:, t] - out[:, t]).max(), 1e-4)
        reach = t + encoder.receptive_field
        if reach < 24:
            self.assertAllClose(base[:, reach:], out[:, reach:], atol=1e-6)

    @parameterized.named_parameters(
        ("single", 3, [1]), ("dilated", 3, [1, 2, 4]), ("pointwise", 1, [1, 1])
    )
    def test_step_matches_full_call(self, kernel_size, rates):
        encoder = CoefficientEncoder(
            6, kernel_size=kernel_size, dilation_rates=rates
        )
        x = keras.random.normal((2, 15, 5))
        full = ops.convert_to_numpy(encoder(x))

        # From an empty context, one position at a time.
        states = encoder.initial_cache(batch_size=2)
        for t in range(15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

        # From the states of a prefix, as cached generation uses them.
        prefix, states = encoder(x[:, :4], cache_update_index=4)
        self.assertAllClose(full[:, :4], prefix, atol=1e-6)
        for t in range(4, 15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

        # From the states at a position inside a longer (padded) input.
        _, states = encoder(x, cache_update_index=6)
        for t in range(6, 15):
            c, states = encoder(x[:, t : t + 1], cache=states)
            self.assertAllClose(full[:, t : t + 1], c, atol=1e-5)

    def test_activation_is_configurable(self):
        encoder = CoefficientEncoder(3, activation="relu")
        out = ops.convert_to_numpy(encoder(keras.random.normal((2, 9, 4))))
        self.assertGreaterEqual(out.min(), 0.0)
        config = encoder.get_config()
        self.assertEqual(config["activation"], "relu")

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "dilation_rates"):
            CoefficientEncoder(4, dilation_rates=[])
        with self.assertRaisesRegex(ValueError, "dilation_rates"):
            CoefficientEncoder(4, dilation_rates=[1, 0])
        with self.assertRaisesRegex(ValueError, "kernel_size"):
            CoefficientEncoder(4, kernel_size=0)
