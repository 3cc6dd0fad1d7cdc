import keras
from keras import ops

from keras_sdgm.layers.causal_mixer import CausalMixer
from keras_sdgm.layers.causal_mixer import frames_before
from keras_sdgm.utils.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="keras_sdgm")
class DepthwiseCoefficientEncoder(CausalMixer):
    """Causal depthwise convolutions, then one projection to coefficients.

    Maps `x` of shape `(batch, length, hidden_dim)` to coefficients `C` of
    shape `(batch, length, num_atoms)` (SPEC section 8, `depthwise`):

    ```
    y = x
    for r in dilation_rates:
        y = y + hidden_act(dwconv_r(y))   # one kernel per channel
    C = act(y W)                          # W: (hidden_dim, num_atoms)
    ```

    Each `dwconv_r` is a causal convolution of width `kernel_size` and
    dilation `r` with one kernel per channel, computed as a sum of
    `kernel_size` shifted products (no grouped convolution, which XLA runs
    slowly on CPU). Its cost per position is about `2 * kernel_size *
    hidden_dim` FLOPs per rate plus `2 * hidden_dim * num_atoms` for the
    projection, against `2 * kernel_size * hidden_dim**2` per rate for the
    full-width convolutions of `CoefficientEncoder`. The receptive field is
    `1 + (kernel_size - 1) * sum(dilation_rates)` positions.

    This is the block token mixer `"depthwise"`. It has the call signature
    and cache of `CoefficientEncoder`: `call(x, cache_update_index=t)` also
    returns each convolution's state, the `(kernel_size - 1) * rate` frames
    before position `t`, and `call(x_t, cache=cache)` encodes one position
    at a cost that does not depend on the context length.

    Args:
        num_atoms: int. Number of coefficients per position.
        kernel_size: int. Width of every depthwise convolution.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of the projection's kernel.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    >>> encoder = DepthwiseCoefficientEncoder(
    ...     num_atoms=8, kernel_size=3, dilation_rates=[1, 2, 4])
    >>> x = keras.random.normal((2, 20, 16))
    >>> encoder(x).shape
    (2, 20, 8)
    >>> coefficients, cache = encoder(x, cache_update_index=20)
    >>> c_next, cache = encoder(keras.random.normal((2, 1, 16)), cache=cache)
    """

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        # Kernel taps oldest first, as Keras orders a Conv1D kernel; each
        # starts as a small perturbation of the residual identity.
        self.depthwise_kernels = [
            self.add_weight(
                name=f"depthwise_kernel_{i}",
                shape=(self.kernel_size, hidden_dim),
                initializer=keras.initializers.RandomNormal(
                    stddev=self.kernel_size**-0.5
                ),
            )
            for i in range(len(self.dilation_rates))
        ]
        self.depthwise_biases = [
            self.add_weight(
                name=f"depthwise_bias_{i}",
                shape=(hidden_dim,),
                initializer="zeros",
            )
            for i in range(len(self.dilation_rates))
        ]
        self.projection = keras.layers.Dense(
            self.num_atoms,
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.projection.build(inputs_shape)

    def _depthwise(self, y, i, rate):
        """The causal depthwise convolution `i` of every position of `y`."""
        width = self._state_width(rate)
        padded = ops.pad(y, [[0, 0], [width, 0], [0, 0]])
        kernel = ops.cast(self.depthwise_kernels[i], y.dtype)
        out = ops.cast(self.depthwise_biases[i], y.dtype)
        for j in range(self.kernel_size):
            # Tap j reads the frame (kernel_size - 1 - j) * rate back.
            end = j * rate - width
            out = out + kernel[j] * padded[:, j * rate : end or None]
        return out

    def call(self, inputs, cache=None, cache_update_index=None):
        """Coefficients of every position; optionally the decoding cache.

        Args:
            inputs: tensor `(batch, length, hidden_dim)`; with a `cache`,
                one new position `(batch, 1, hidden_dim)`.
            cache: `None`, or the list of convolution states (one tensor per
                rate) before the new position, from a previous call or
                `initial_cache()`.
            cache_update_index: `None`, or an int or scalar int tensor in
                `[0, length]`. Without a `cache`: also return the cache that
                a call at position `cache_update_index` reads.

        Returns:
            Coefficients `(batch, length, num_atoms)`, or
            `(coefficients, cache)` when `cache` or `cache_update_index` is
            given.
        """
        if cache is not None:
            features, cache = self._step(inputs, cache)
        else:
            features, cache = self._sequence(inputs, cache_update_index)
        coefficients = self.projection(features)
        if cache is None:
            return coefficients
        return coefficients, cache

    def _sequence(self, x, cache_update_index):
        """Features of every position, and the cache at a position if asked.

        Subclasses extend the features the projection reads (a gate, the
        spectral modes) by overriding this and `_step`.
        """
        y = x
        cache = None if cache_update_index is None else []
        for i, rate in enumerate(self.dilation_rates):
            if cache is not None:
                cache.append(
                    frames_before(
                        y, self._state_width(rate), cache_update_index
                    )
                )
            y = y + self.hidden_activation(self._depthwise(y, i, rate))
        return y, cache

    def initial_cache(self, batch_size):
        """The cache of an empty context (zeros, what causal padding sees)."""
        hidden_dim = self.depthwise_kernels[0].shape[-1]
        return [
            ops.zeros(
                (batch_size, self._state_width(rate), hidden_dim),
                dtype=self.compute_dtype,
            )
            for rate in self.dilation_rates
        ]

    def _step(self, x, cache):
        """Features of one new position `x` from the cache before it."""
        y = x
        next_cache = []
        for i, (rate, state) in enumerate(zip(self.dilation_rates, cache)):
            window = ops.concatenate([state, y], axis=1)
            next_cache.append(window[:, 1:, :])
            taps = window[:, ::rate, :]  # oldest first, the newest last
            kernel = ops.cast(self.depthwise_kernels[i], taps.dtype)
            out = ops.sum(taps * kernel[None], axis=1, keepdims=True)
            out = out + ops.cast(self.depthwise_biases[i], taps.dtype)
            y = y + self.hidden_activation(out)
        return y, next_cache
