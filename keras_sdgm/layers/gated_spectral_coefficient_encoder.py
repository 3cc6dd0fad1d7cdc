import keras

from keras_sdgm.layers.gated_coefficient_encoder import GatedCoefficientEncoder
from keras_sdgm.layers.spectral_coefficient_encoder import (
    SpectralCoefficientEncoder,
)


@keras.saving.register_keras_serializable(package="keras_sdgm")
class GatedSpectralCoefficientEncoder(
    GatedCoefficientEncoder, SpectralCoefficientEncoder
):
    """The spectral modes under the multiplicative gate of `"gated"`.

    The block token mixer `"gated_spectral"` (SPEC section 8): the features
    of `SpectralCoefficientEncoder` (short depthwise convolutions `y` plus
    the modes' read-out `h`, which sees every past position), gated per
    feature by the position's own input before the projection to
    coefficients, as `GatedCoefficientEncoder` gates its convolutions:

    ```
    C = act(((y + h) * sigmoid(x W_g + b_g)) W)   # W_g: (hidden_dim, hidden_dim)
    ```

    The gate costs `2 * hidden_dim**2` FLOPs per position and reads only the
    current position, so the receptive field (every past position) and the
    cache are those of `SpectralCoefficientEncoder`. The measurements that
    made it the default are in docs/ABLATIONS.md ("Token mixers").

    Args:
        num_atoms: int. Number of coefficients per position.
        window_length: int. The unit of the modes' frequencies and the scale
            of their decay initialization.
        num_modes: int or `None`. Number of complex modes; `None` for
            `num_atoms`.
        chunk_size: int or `None`. Positions per chunk of the full pass;
            `None` (default) to choose them from the length (see
            `SpectralCoefficientEncoder`).
        kernel_size: int. Width of the short depthwise convolutions.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of the dense kernels and the
            read-out.
        **kwargs: other `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `(batch, length, hidden_dim)`; with a `cache`, one
            new position `(batch, 1, hidden_dim)`.
        cache: `None`, or the cache before the new position (see
            `SpectralCoefficientEncoder`).
        cache_update_index: `None`, or an int or scalar int tensor in
            `[0, length]`. Without a `cache`: also return the cache that a
            call at position `cache_update_index` reads.

    Example:
    >>> encoder = GatedSpectralCoefficientEncoder(
    ...     num_atoms=8, window_length=16)
    >>> x = keras.random.normal((2, 20, 16))
    >>> encoder(x).shape
    (2, 20, 8)
    >>> coefficients, cache = encoder(x, cache_update_index=20)
    >>> c_next, cache = encoder(keras.random.normal((2, 1, 16)), cache=cache)
    """
