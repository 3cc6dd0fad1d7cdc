import keras
from keras import ops

from keras_sdgm.utils.validation import require_positive_int
from keras_sdgm.utils.validation import require_positive_int_list


def frames_before(x, width, index):
    """Frames `index - width .. index - 1` of `x`, zeros before frame 0.

    The state a causal convolution reading `width` past frames needs to
    continue at frame `index`.
    """
    padded = ops.pad(x, [[0, 0], [width, 0], [0, 0]])
    batch_size, _, channels = ops.shape(x)
    return ops.slice(padded, [0, index, 0], [batch_size, width, channels])


class CausalMixer(keras.layers.Layer):
    """What the convolutional token mixers share (SPEC section 8).

    A mixer maps `x` of shape `(batch, length, hidden_dim)` to coefficients
    `(batch, length, num_atoms)` through causal convolutions of width
    `kernel_size`, one per dilation rate, and keeps, per convolution, the
    `(kernel_size - 1) * rate` frames before a position as its decoding
    state. Subclasses build the weights and define `call(inputs,
    cache=None, cache_update_index=None)` and `initial_cache(batch_size)`.

    Args:
        num_atoms: int. Number of coefficients per position.
        kernel_size: int. Width of every convolution.
        dilation_rates: list of ints. One convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the inner convolutions.
        kernel_initializer: initializer of the dense kernels.
        **kwargs: other `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        num_atoms,
        kernel_size=3,
        dilation_rates=(1,),
        activation="gelu",
        hidden_activation="gelu",
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.kernel_size = require_positive_int("kernel_size", kernel_size)
        self.dilation_rates = require_positive_int_list(
            "dilation_rates", dilation_rates
        )
        self.activation = keras.activations.get(activation)
        self.hidden_activation = keras.activations.get(hidden_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def receptive_field(self):
        """Number of positions, the current one included, a coefficient sees."""
        return 1 + (self.kernel_size - 1) * sum(self.dilation_rates)

    def _state_width(self, rate):
        """Frames of state a convolution of dilation `rate` keeps."""
        return (self.kernel_size - 1) * rate

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.num_atoms,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "kernel_size": self.kernel_size,
                "dilation_rates": list(self.dilation_rates),
                "activation": keras.activations.serialize(self.activation),
                "hidden_activation": keras.activations.serialize(
                    self.hidden_activation
                ),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
