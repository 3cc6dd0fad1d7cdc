import numpy as np
from keras import ops

from keras_sdgm.layers import DepthwiseCoefficientEncoder
from tests.testing import TestCase


def numpy_depthwise(encoder, x):
    """The layer's definition in NumPy, a loop over positions and taps."""
    y = np.asarray(x, "float64")
    length = y.shape[1]
    for kernel, bias, rate in zip(
        encoder.depthwise_kernels,
        encoder.depthwise_biases,
        encoder.dilation_rates,
    ):
        kernel = ops.convert_to_numpy(kernel).astype("float64")
        out = np.zeros_like(y) + ops.convert_to_numpy(bias)
        for t in range(length):
            for j in range(encoder.kernel_size):
                s = t - (encoder.kernel_size - 1 - j) * rate
                if s >= 0:
                    out[:, t] += kernel[j] * y[:, s]
        y = y + ops.convert_to_numpy(
            encoder.hidden_activation(ops.convert_to_tensor(out, "float32"))
        )
    w = ops.convert_to_numpy(encoder.projection.kernel).astype("float64")
    b = ops.convert_to_numpy(encoder.projection.bias)
    return ops.convert_to_numpy(
        encoder.activation(ops.convert_to_tensor(y @ w + b, "float32"))
    )


class DepthwiseCoefficientEncoderTest(TestCase):
    def test_matches_its_definition(self):
        encoder = DepthwiseCoefficientEncoder(
            5, kernel_size=3, dilation_rates=[1, 4]
        )
        x = np.random.RandomState(0).randn(2, 13, 6).astype("float32")
        self.assertAllClose(
            encoder(x), numpy_depthwise(encoder, x), atol=1e-5, rtol=1e-5
        )

    def test_weights_scale_with_hidden_dim_not_its_square(self):
        encoder = DepthwiseCoefficientEncoder(
            8, kernel_size=3, dilation_rates=[1, 2, 4]
        )
        encoder.build((None, None, 64))
        # 3 rates x (3 x 64 + 64), and the 64 x 8 projection plus its bias.
        self.assertEqual(encoder.count_params(), 3 * 4 * 64 + 64 * 8 + 8)
