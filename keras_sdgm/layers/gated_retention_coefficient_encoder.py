import keras

from keras_sdgm.layers.gated_coefficient_encoder import GatedCoefficientEncoder
from keras_sdgm.layers.retention_coefficient_encoder import (
    RetentionCoefficientEncoder,
)


@keras.saving.register_keras_serializable(package="keras_sdgm")
class GatedRetentionCoefficientEncoder(
    GatedCoefficientEncoder, RetentionCoefficientEncoder
):
    """The retention under the multiplicative gate of `"gated"`.

    The block token mixer `"gated_retention"` (SPEC section 8): the features
    of `RetentionCoefficientEncoder` (short depthwise convolutions `y` plus
    the normalized retention output, which reads every past position by
    content and lag), gated per feature by the position's own input before
    the projection to coefficients, as `GatedSpectralCoefficientEncoder`
    gates the spectral modes:

    ```
    C = act(((y + norm(o)) * sigmoid(x W_g + b_g)) W)
    ```

    The gate costs `2 * hidden_dim**2` FLOPs per position and reads only the
    current position, so the receptive field (every past position) and the
    cache are those of `RetentionCoefficientEncoder`.

    Args:
        num_atoms: int. Number of coefficients per position.
        window_length: int. The unit of the frequencies and the scale of the
            decay initialization.
        num_heads: int or `None`. Number of heads; `None` (default) for
            heads of 64 features (see `RetentionCoefficientEncoder`).
        chunk_size: int or `None`. Positions per chunk of the full pass;
            `None` (default) for the length up to 64.
        kernel_size: int. Width of the short depthwise convolutions.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of the projections' and the gate's
            kernels.
        **kwargs: other `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `(batch, length, hidden_dim)`; with a `cache`, one
            new position `(batch, 1, hidden_dim)`.
        cache: `None`, or the cache before the new position (see
            `RetentionCoefficientEncoder`).
        cache_update_index: `None`, or an int or scalar int tensor in
            `[0, length]`. Without a `cache`: also return the cache that a
            call at position `cache_update_index` reads.

    Example:
    >>> encoder = GatedRetentionCoefficientEncoder(
    ...     num_atoms=8, window_length=16)
    >>> x = keras.random.normal((2, 20, 16))
    >>> encoder(x).shape
    (2, 20, 8)
    >>> coefficients, cache = encoder(x, cache_update_index=20)
    >>> c_next, cache = encoder(keras.random.normal((2, 1, 16)), cache=cache)
    """
