import keras
from keras import ops

from keras_sdgm.layers.causal_mixer import CausalMixer
from keras_sdgm.layers.causal_mixer import frames_before
from keras_sdgm.utils.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="keras_sdgm")
class CoefficientEncoder(CausalMixer):
    """Causal convolutions from embedded tokens to dictionary coefficients.

    Maps `x` of shape `(batch, length, hidden_dim)` to coefficients `C` of
    shape `(batch, length, num_atoms)`. With one dilation rate this is the
    paper's single `act(Conv1D(x))`. With several, each rate but the last
    adds a residual causal convolution `x = x + hidden_act(conv(x))` that
    keeps the width, and the last maps to `num_atoms` channels through
    `activation`. The receptive field is
    `1 + (kernel_size - 1) * sum(dilation_rates)` positions, e.g. 127 for
    kernel 3 and rates 1, 2, 4, ..., 32: enough to see a 128-token window.

    Every convolution pads on the left only, so the coefficient at position
    `t` depends on positions `<= t`.

    This is the block's token mixer `"dilated_convolution"`: the only part
    of an SDGM block that moves information between positions.

    For cached decoding, `call(x, cache_update_index=t)` also returns the
    cache: each convolution's state, the `(kernel_size - 1) * rate` input
    frames before position `t` (zeros before position 0); and
    `call(x_t, cache=cache)` encodes one new position and returns its
    coefficients and the next cache. The cost of such a step does not
    depend on how long the context is.

    Args:
        num_atoms: int. Number of coefficients per position.
        kernel_size: int. Width of every convolution.
        dilation_rates: list of ints. One convolution per rate.
        activation: activation of the coefficients (last convolution).
        hidden_activation: activation of the residual convolutions.
        kernel_initializer: initializer of the convolution kernels.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    >>> encoder = CoefficientEncoder(
    ...     num_atoms=8, kernel_size=3, dilation_rates=[1, 2, 4])
    >>> x = keras.random.normal((2, 20, 16))
    >>> encoder(x).shape
    (2, 20, 8)
    >>> coefficients, cache = encoder(x, cache_update_index=20)
    >>> c_next, cache = encoder(keras.random.normal((2, 1, 16)), cache=cache)
    """

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        self.convolutions = []
        for i, rate in enumerate(self.dilation_rates):
            is_last = i == len(self.dilation_rates) - 1
            convolution = keras.layers.Conv1D(
                filters=self.num_atoms if is_last else hidden_dim,
                kernel_size=self.kernel_size,
                dilation_rate=rate,
                padding="causal",
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=f"convolution_{i}",
            )
            convolution.build(inputs_shape)
            self.convolutions.append(convolution)

    def _output(self, convolution, x, conv_out):
        if convolution is self.convolutions[-1]:
            return self.activation(conv_out)
        return x + self.hidden_activation(conv_out)

    def call(self, inputs, cache=None, cache_update_index=None):
        """Coefficients of every position; optionally the decoding cache.

        Args:
            inputs: tensor `(batch, length, hidden_dim)`; with a `cache`,
                one new position `(batch, 1, hidden_dim)`.
            cache: `None`, or the list of convolution states (one tensor per
                convolution) before the new position, from a previous call
                or `initial_cache()`. Then the call encodes one position at
                a cost that does not depend on how long the context is.
            cache_update_index: `None`, or an int or scalar int tensor in
                `[0, length]`. Without a `cache`: also return the cache that
                a call at position `cache_update_index` reads (for seeding a
                decoding cache from a prompt).

        Returns:
            Coefficients `(batch, length, num_atoms)`, or
            `(coefficients, cache)` when `cache` or `cache_update_index` is
            given.
        """
        if cache is not None:
            return self._step(inputs, cache)
        x = inputs
        cache = []
        for convolution in self.convolutions:
            if cache_update_index is not None:
                cache.append(
                    frames_before(
                        x,
                        self._state_width(convolution.dilation_rate[0]),
                        cache_update_index,
                    )
                )
            x = self._output(convolution, x, convolution(x))
        if cache_update_index is None:
            return x
        return x, cache

    def initial_cache(self, batch_size):
        """The cache of an empty context (zeros, what causal padding sees)."""
        return [
            ops.zeros(
                (
                    batch_size,
                    self._state_width(c.dilation_rate[0]),
                    c.kernel.shape[1],
                ),
                dtype=self.compute_dtype,
            )
            for c in self.convolutions
        ]

    def _step(self, inputs, cache):
        x = inputs
        next_cache = []
        for convolution, state in zip(self.convolutions, cache):
            window = ops.concatenate([state, x], axis=1)
            next_cache.append(window[:, 1:, :])
            # The taps a causal dilated convolution reads for the newest
            # position, oldest first, as Keras orders the kernel.
            taps = window[:, :: convolution.dilation_rate[0], :]
            kernel = ops.cast(convolution.kernel, taps.dtype)
            conv_out = ops.einsum("bkc,kco->bo", taps, kernel)[:, None, :]
            conv_out = conv_out + ops.cast(convolution.bias, taps.dtype)
            x = self._output(convolution, x, conv_out)
        return x, next_cache
