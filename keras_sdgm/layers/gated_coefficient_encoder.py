import keras

from keras_sdgm.layers.depthwise_coefficient_encoder import (
    DepthwiseCoefficientEncoder,
)
from keras_sdgm.utils.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="keras_sdgm")
class GatedCoefficientEncoder(DepthwiseCoefficientEncoder):
    """Causal depthwise convolutions under a multiplicative gate.

    The block token mixer `"gated"` (SPEC section 8): the convolutions of
    `DepthwiseCoefficientEncoder`, whose output is gated per feature by the
    position's own input before the projection to coefficients, as in the
    short convolutions of H3 and Mamba:

    ```
    y = depthwise_convolutions(x)
    y = y * sigmoid(x W_g + b_g)          # W_g: (hidden_dim, hidden_dim)
    C = act(y W)
    ```

    The gate costs `2 * hidden_dim**2` FLOPs per position and reads only the
    current position, so the receptive field and the cache are those of
    `DepthwiseCoefficientEncoder`.

    Args:
        num_atoms: int. Number of coefficients per position.
        kernel_size: int. Width of every depthwise convolution.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of the gate's and projection's
            kernels.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    >>> encoder = GatedCoefficientEncoder(
    ...     num_atoms=8, kernel_size=3, dilation_rates=[1, 2, 4])
    >>> encoder(keras.random.normal((2, 20, 16))).shape
    (2, 20, 8)
    """

    def build(self, inputs_shape):
        super().build(inputs_shape)
        self.gate = keras.layers.Dense(
            inputs_shape[-1],
            activation="sigmoid",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="gate",
        )
        self.gate.build(inputs_shape)

    def _sequence(self, x, cache_update_index):
        y, cache = super()._sequence(x, cache_update_index)
        return y * self.gate(x), cache

    def _step(self, x, cache):
        y, cache = super()._step(x, cache)
        return y * self.gate(x), cache
