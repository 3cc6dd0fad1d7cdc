import keras
from keras import ops

from keras_sdgm.utils.rows import apply_to_rows
from keras_sdgm.utils.validation import require_positive_int


@keras.saving.register_keras_serializable(package="keras_sdgm")
class StaticDictionary(keras.layers.Layer):
    """A position-independent dictionary: one learned `(K, D)` matrix.

    Called on coefficients `C` of shape `(batch, length, num_atoms)`, the
    layer returns `X_hat[b, t, d] = sum_k C[b, t, k] W[k, d]`: the same
    atoms at every position. It has `SpectralDictionary`'s call signature
    (`start_index` is accepted and has no effect), so an SDGM block takes it
    with `dictionary_type="static"`: the ablation that asks what the
    sinusoidal atoms add (docs/ABLATIONS.md).

    Args:
        num_atoms: int. Number of atoms `K`.
        hidden_dim: int. Feature dimension `D` of the reconstruction.
        kernel_initializer: initializer of `W` (default: normal with
            standard deviation 0.02, as the spectral amplitudes).
        **kwargs: other `keras.layers.Layer` arguments, e.g. `name`, `dtype`.

    Call arguments:
        coefficients: tensor `(batch, length, num_atoms)`.
        start_index: int or scalar int tensor, ignored (no positions).

    Example:
    >>> dictionary = StaticDictionary(num_atoms=16, hidden_dim=32)
    >>> dictionary(keras.random.normal((2, 10, 16))).shape
    (2, 10, 32)
    """

    def __init__(
        self,
        num_atoms,
        hidden_dim,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.hidden_dim = require_positive_int("hidden_dim", hidden_dim)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=0.02)
        )

    def build(self, coefficients_shape=None):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_atoms, self.hidden_dim),
            initializer=self.kernel_initializer,
        )

    def call(self, coefficients, start_index=0):
        kernel = ops.cast(self.kernel, coefficients.dtype)
        # As rows: the 3-D product's gradient is slow under XLA on the CPU.
        return apply_to_rows(
            lambda rows: ops.matmul(rows, kernel), coefficients
        )

    def flops_per_token(self):
        """Forward matmul FLOPs per token: mixing the `K` atoms, `2 K D`."""
        return 2 * self.num_atoms * self.hidden_dim

    def compute_output_shape(self, coefficients_shape):
        return tuple(coefficients_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "hidden_dim": self.hidden_dim,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
