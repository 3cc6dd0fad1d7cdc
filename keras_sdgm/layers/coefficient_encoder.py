import keras
from keras import ops

from keras_sdgm.utils.validation import require_positive_int


@keras.saving.register_keras_serializable(package="keras_sdgm")
class CoefficientEncoder(keras.layers.Layer):
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

    For cached decoding, `call(..., return_states=True)` also returns each
    convolution's state (the `(kernel_size - 1) * rate` input frames before
    position `state_index`, by default the end of the sequence; zeros before
    position 0), and `step()` consumes one new position and the states and
    returns the coefficient and the new states. The cost of a step does not
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
    >>> coefficients, states = encoder(x, return_states=True)
    >>> c_next, states = encoder.step(keras.random.normal((2, 1, 16)), states)
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
        if isinstance(dilation_rates, int) or not dilation_rates:
            raise ValueError(
                "`dilation_rates` must be a non-empty list of positive "
                f"integers. Received: dilation_rates={dilation_rates!r}"
            )
        self.dilation_rates = [
            require_positive_int("dilation_rates", rate)
            for rate in dilation_rates
        ]
        self.activation = keras.activations.get(activation)
        self.hidden_activation = keras.activations.get(hidden_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def receptive_field(self):
        """Number of positions, the current one included, a coefficient sees."""
        return 1 + (self.kernel_size - 1) * sum(self.dilation_rates)

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
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"convolution_{i}",
            )
            convolution.build(inputs_shape)
            self.convolutions.append(convolution)

    def _state_width(self, convolution):
        return (self.kernel_size - 1) * convolution.dilation_rate[0]

    def _frames_before(self, x, width, index):
        """Frames `index - width .. index - 1` of `x`, zeros before frame 0."""
        padded = ops.pad(x, [[0, 0], [width, 0], [0, 0]])
        batch_size, _, channels = ops.shape(x)
        return ops.slice(padded, [0, index, 0], [batch_size, width, channels])

    def _output(self, convolution, x, conv_out):
        if convolution is self.convolutions[-1]:
            return self.activation(conv_out)
        return x + self.hidden_activation(conv_out)

    def call(self, inputs, return_states=False, state_index=None):
        """Coefficients of every position, and optionally decoding states.

        Args:
            inputs: tensor `(batch, length, hidden_dim)`.
            return_states: bool. Also return the states that a `step()` at
                position `state_index` reads.
            state_index: int or scalar int tensor in `[0, length]`; default
                `length` (the states for continuing after the sequence).

        Returns:
            Coefficients `(batch, length, num_atoms)`, or
            `(coefficients, states)` with `return_states=True`.
        """
        x = inputs
        if state_index is None:
            state_index = ops.shape(x)[1]
        states = []
        for convolution in self.convolutions:
            if return_states:
                states.append(
                    self._frames_before(
                        x, self._state_width(convolution), state_index
                    )
                )
            x = self._output(convolution, x, convolution(x))
        if return_states:
            return x, states
        return x

    def initial_states(self, batch_size):
        """Zero states, as for an empty context (what causal padding sees)."""
        return [
            ops.zeros(
                (batch_size, self._state_width(c), c.kernel.shape[1]),
                dtype=self.compute_dtype,
            )
            for c in self.convolutions
        ]

    def step(self, inputs, states):
        """Encodes one new position given the convolution states.

        Args:
            inputs: tensor `(batch, 1, hidden_dim)`, the new position.
            states: list of tensors, one per convolution, as returned by
                `call(..., return_states=True)`, `initial_states()` or a
                previous `step()`.

        Returns:
            `(coefficients, new_states)`, coefficients of shape
            `(batch, 1, num_atoms)`.
        """
        x = inputs
        new_states = []
        for convolution, state in zip(self.convolutions, states):
            window = ops.concatenate([state, x], axis=1)
            new_states.append(window[:, 1:, :])
            # The taps a causal dilated convolution reads for the newest
            # position, oldest first, as Keras orders the kernel.
            taps = window[:, :: convolution.dilation_rate[0], :]
            kernel = ops.cast(convolution.kernel, taps.dtype)
            conv_out = ops.einsum("bkc,kco->bo", taps, kernel)[:, None, :]
            conv_out = conv_out + ops.cast(convolution.bias, taps.dtype)
            x = self._output(convolution, x, conv_out)
        return x, new_states

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
