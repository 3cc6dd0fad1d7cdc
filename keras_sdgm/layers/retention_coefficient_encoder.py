import math

import keras
import numpy as np
from keras import ops

from keras_sdgm.layers.depthwise_coefficient_encoder import (
    DepthwiseCoefficientEncoder,
)
from keras_sdgm.utils.initializers import clone_initializer
from keras_sdgm.utils.initializers import decay_for_time_scales
from keras_sdgm.utils.validation import require_positive_int

# Features per head when `num_heads` is not given.
HEAD_DIM = 64
# Positions per chunk of the full pass when `chunk_size` is not given (fewer
# for shorter inputs); also the choice for a length unknown when traced.
MAX_CHUNK_SIZE = 64
# Most chunks whose states the full pass carries by a loop over them
# (when their number is known when traced); more, or an unknown number, by
# one product over every pair of chunks, which keeps less for the gradient
# and runs faster at that many.
MAX_LOOPED_CHUNKS = 16
# Decay time scales at initialization, spread geometrically over the heads
# from `MIN_TIME_SCALE` positions to `MAX_TIME_SCALE_WINDOWS` windows.
MIN_TIME_SCALE = 4.0
MAX_TIME_SCALE_WINDOWS = 8.0
# The base of the frequencies' initialization (as rotary embeddings').
FREQUENCY_BASE = 10000.0


@keras.saving.register_keras_serializable(package="keras_sdgm")
class RetentionCoefficientEncoder(DepthwiseCoefficientEncoder):
    """Content-addressed retention with damped sinusoidal lag kernels.

    The block token mixer `"retention"` (SPEC section 8): the method's
    damped sinusoidal modes as the relative-position kernel of a linear
    attention, so that a position reads the past by content as well as by
    lag. After the short causal convolutions of
    `DepthwiseCoefficientEncoder` (`y`), each head `h` of `head_dim`
    features projects queries, keys and values, `q, k, v = split(y W_qkv)`
    (keys scaled by `head_dim ** -0.5`), pairs the query and key features
    into `head_dim / 2` complex numbers, and keeps per pair `j` the mode
    `lambda[h, j] = r_h exp(i omega[h, j])`:

    ```
    z[t, j, :] = lambda[h, j] z[t - 1, j, :] + k[t, j] v[t, :]
    o[t, :]    = Re sum_j conj(q[t, j]) z[t, j, :]
               = sum_{s <= t} v[s, :] r_h^(t - s) sum_j |q[t, j]| |k[s, j]|
                             cos(omega[h, j] (t - s) + arg k[s, j] - arg q[t, j])
    C = act((y + norm(o)) W)
    ```

    A key and a query select what is read by content; the lag enters as
    damped sinusoids of per-pair frequency `omega = 2 pi f / window_length`
    (`f` in cycles per window, as in `SpectralDictionary`) and per-head
    decay `r = exp(-softplus(rho))`, whose amplitude and phase the two
    positions' features set. It is a retention (RetNet) whose rotary angles
    and decays are learned; `norm` normalizes each head's output over its
    features, at each position. The decoding state is `num_heads *
    head_dim**2 / 2` complex numbers per sequence, whatever the context.

    The full pass computes the recurrence exactly in chunks of `S`
    positions: inside a chunk as a masked product of rotated queries and
    keys (`(S, S)` per head, rotations by the position in the chunk, so
    their angles stay small), between chunks by the states entering each
    chunk, carried from chunk to chunk by `lambda^S` and read by the same
    rotated queries. Its cost per position is about `4 * S * hidden_dim`
    (inside a chunk) + `4 * head_dim * hidden_dim` (the chunks' states
    and reading them) + `8 * head_dim * hidden_dim / S` (carrying them)
    FLOPs, plus the convolutions and the projections (`6 * hidden_dim**2`
    for queries, keys and values). `S` is `chunk_size`, by default the
    length up to 64. The retention is computed in float32 whatever the
    dtype policy.

    Initializers: frequencies those of rotary embeddings (`10000 **
    (-2 j / head_dim)` radians per position, the same in every head), decay
    time scales `1 / softplus(rho)` spread geometrically over the heads from
    4 positions to 8 windows, the projections by `kernel_initializer`.

    Args:
        num_atoms: int. Number of coefficients per position.
        window_length: int. The unit of the frequencies (cycles per
            `window_length` positions) and the scale of the decay
            initialization.
        num_heads: int or `None`. Number of heads; the features must split
            into heads of an even size. `None` (default): heads of 64
            features (one head below 128 features).
        chunk_size: int or `None`. Positions per chunk of the full pass;
            `None` (default) for the length up to 64. Every size gives
            the same result.
        kernel_size: int. Width of the short depthwise convolutions.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of the projections' kernels.
        **kwargs: other `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `(batch, length, hidden_dim)`; with a `cache`, one
            new position `(batch, 1, hidden_dim)`.
        cache: `None`, or the cache before the new position: the
            convolution states, then the retention state `(batch,
            num_heads, head_dim, head_dim)` (the pairs' real parts, then
            their imaginary parts, by the values' features), from a
            previous call or `initial_cache()`.
        cache_update_index: `None`, or an int or scalar int tensor in
            `[0, length]`. Without a `cache`: also return the cache that a
            call at position `cache_update_index` reads.

    Example:
    >>> encoder = RetentionCoefficientEncoder(num_atoms=8, window_length=16)
    >>> x = keras.random.normal((2, 20, 16))
    >>> encoder(x).shape
    (2, 20, 8)
    >>> coefficients, cache = encoder(x, cache_update_index=20)
    >>> c_next, cache = encoder(keras.random.normal((2, 1, 16)), cache=cache)
    """

    def __init__(
        self,
        num_atoms,
        window_length,
        num_heads=None,
        chunk_size=None,
        **kwargs,
    ):
        super().__init__(num_atoms, **kwargs)
        self.window_length = require_positive_int(
            "window_length", window_length
        )
        if num_heads is not None:
            num_heads = require_positive_int("num_heads", num_heads)
        self.num_heads = num_heads
        if chunk_size is not None:
            chunk_size = require_positive_int("chunk_size", chunk_size)
        self.chunk_size = chunk_size

    @property
    def receptive_field(self):
        """`None`: a coefficient sees every past position."""
        return None

    def build(self, inputs_shape):
        super().build(inputs_shape)
        hidden_dim = inputs_shape[-1]
        heads = self.num_heads or max(1, hidden_dim // HEAD_DIM)
        if hidden_dim % heads or (hidden_dim // heads) % 2:
            raise ValueError(
                "The retention's heads need an even number of features "
                f"each: {hidden_dim} features do not split into "
                f"num_heads={heads} heads of an even size. Choose "
                "`num_heads` so that `hidden_dim / num_heads` is even."
            )
        self._heads, self._head_dim = heads, hidden_dim // heads
        self.query_key_value = keras.layers.Dense(
            3 * hidden_dim,
            use_bias=False,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="query_key_value",
        )
        self.query_key_value.build(inputs_shape)
        self.output_norm = keras.layers.LayerNormalization(
            dtype=self.dtype_policy, name="output_norm"
        )
        self.output_norm.build((None, None, heads, self._head_dim))
        self.frequency = self.add_weight(
            name="frequency",
            shape=(heads, self._head_dim // 2),
            initializer=self._frequency_initializer,
        )
        self.decay = self.add_weight(
            name="decay", shape=(heads,), initializer=self._decay_initializer
        )

    def _frequency_initializer(self, shape, dtype=None):
        # Rotary embeddings' angles per position, in cycles per window.
        pairs = np.arange(shape[1])
        omega = FREQUENCY_BASE ** (-2.0 * pairs / (2 * shape[1]))
        cycles = omega * self.window_length / (2 * math.pi)
        return ops.convert_to_tensor(np.tile(cycles, (shape[0], 1)), dtype)

    def _decay_initializer(self, shape, dtype=None):
        tau = np.geomspace(
            MIN_TIME_SCALE,
            MAX_TIME_SCALE_WINDOWS * self.window_length,
            shape[0],
        )
        return ops.convert_to_tensor(decay_for_time_scales(tau), dtype)

    def chunk_size_for(self, length):
        """Positions per chunk in a full pass over `length` positions:
        `chunk_size` if set, else the length up to `MAX_CHUNK_SIZE`
        (`MAX_CHUNK_SIZE` when the length is not known when traced)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if not isinstance(length, int):
            return MAX_CHUNK_SIZE
        return min(MAX_CHUNK_SIZE, max(length, 1))

    def sequence_flops_per_token(self, length):
        """Forward FLOPs per position of the work that has no weights.

        With `D = hidden_dim`, `d = head_dim` and chunks of `S` positions:
        scores and their product with the values inside a chunk (`4 * S *
        D`), the chunks' states and reading them at every position (`4 * d
        * D`), and carrying the states from chunk to chunk (`8 * d * D /
        S`: a complex product and a sum per state entry and chunk); no
        states when the length fits in one chunk. The rotations and decays
        of queries and keys are elementwise and not counted. The work with
        weights (projections, convolutions) is counted from the weights by
        the benchmarks.
        """
        size = self.chunk_size_for(length)
        hidden_dim = self._heads * self._head_dim
        if length <= size:
            return hidden_dim * 4 * size
        return hidden_dim * (4 * size + 4 * self._head_dim * (1 + 2 / size))

    def _modes(self):
        """`log r` per head `(num_heads,)` and `omega` per head and pair
        `(num_heads, head_dim / 2)`, float32."""
        log_r = -ops.softplus(ops.cast(self.decay, "float32"))
        omega = ops.cast(self.frequency, "float32") * (
            2 * math.pi / self.window_length
        )
        return log_r, omega

    def _heads_of(self, y):
        """Queries, keys and values `(..., num_heads, head_dim)`, float32,
        from the features `y` `(..., hidden_dim)`."""
        qkv = ops.cast(self.query_key_value(y), "float32")
        shape = tuple(ops.shape(y)[:-1]) + (self._heads, self._head_dim)
        q, k, v = [ops.reshape(t, shape) for t in ops.split(qkv, 3, axis=-1)]
        return q, k * self._head_dim**-0.5, v

    def _output(self, y, o):
        """`y + norm(o)` from the heads' outputs `(..., num_heads,
        head_dim)`."""
        o = self.output_norm(ops.cast(o, self.compute_dtype))
        return y + ops.reshape(o, ops.shape(y))

    def _sequence(self, x, cache_update_index):
        y, cache = super()._sequence(x, cache_update_index)
        o, state = self._retention(y, cache_update_index)
        if cache is not None:
            cache.append(state)
        return self._output(y, o), cache

    def _retention(self, y, cache_update_index):
        """The heads' outputs `(batch, length, num_heads, head_dim)` of
        every position, and the state before `cache_update_index` (or
        `None`)."""
        log_r, omega = self._modes()
        q, k, v = self._heads_of(y)
        batch_size, length = ops.shape(y)[0], ops.shape(y)[1]
        size = self.chunk_size_for(length)
        num_chunks = (length + size - 1) // size
        padding = [[0, 0], [0, num_chunks * size - length], [0, 0], [0, 0]]
        q, k, v = [ops.pad(t, padding) for t in (q, k, v)]
        # Heads first, `(batch, num_heads, num_chunks, S, head_dim)`: the
        # products below then batch over leading axes and contract the last.
        shape = (batch_size, num_chunks, size, self._heads, self._head_dim)
        q_c, k_c, v_c = [
            ops.transpose(ops.reshape(t, shape), (0, 3, 1, 2, 4))
            for t in (q, k, v)
        ]
        positions = ops.cast(ops.arange(size), "float32")

        # Inside a chunk: scores of queries and keys turned by their
        # position in the chunk, masked by r^(i - j) where i >= j.
        # (heads, 1, S, pairs), broadcast over the batch and the chunks.
        angle = positions[None, None, :, None] * omega[:, None, None]
        q_turned, k_turned = _turn(q_c, angle), _turn(k_c, angle)
        lag = positions[:, None] - positions[None, :]
        mask = ops.exp(ops.maximum(lag, 0.0) * log_r[:, None, None, None])
        mask = mask * ops.cast(lag >= 0, "float32")  # (heads, 1, S, S)
        scores = ops.einsum("bhnid,bhnjd->bhnij", q_turned, k_turned) * mask
        o = ops.einsum("bhnij,bhnjd->bhnid", scores, v_c)

        if not (isinstance(num_chunks, int) and num_chunks == 1):
            # The state entering chunk n, z[n S - 1] = sum_{s < n S}
            # lambda^(n S - 1 - s) k[s] v[s], reaches position i of the
            # chunk as lambda^(i + 1) z, read by conj(q[i]): with
            # lambda^(i + 1) conj(q[i]) = lambda r^i conj(q_turned[i]), the
            # turned queries read the states z' = lambda z, scaled by r^i.
            states = self._chunk_states(k_turned, v_c, log_r, omega, size)
            read = ops.exp(positions * log_r[:, None])[:, None, :, None]
            o = o + ops.einsum("bhnid,bhnde->bhnie", q_turned * read, states)
        o = ops.reshape(
            ops.transpose(o, (0, 2, 3, 1, 4)),
            (batch_size, num_chunks * size, self._heads, self._head_dim),
        )[:, :length]
        if cache_update_index is None:
            return o, None
        # z[t - 1] = sum_{s < t} lambda^(t - 1 - s) k[s] v[s].
        lag = ops.cast(
            cache_update_index - 1 - ops.arange(num_chunks * size), "float32"
        )
        past = ops.cast(lag >= 0, "float32")[:, None, None]
        lag = ops.maximum(lag, 0.0)[:, None, None]
        weight = ops.exp(lag * log_r[:, None]) * past
        k_pairs = _pairs(k, axis=-1)
        turn = (weight * ops.cos(lag * omega), weight * ops.sin(lag * omega))
        k_state = ops.concatenate(_complex_times(turn, k_pairs, None), axis=-1)
        return o, ops.einsum("bshp,bshd->bhpd", k_state, v)

    def _chunk_states(self, k_turned, v, log_r, omega, size):
        """The states `z'[n] = sum_{s < n S} lambda^(n S - s) k[s] v[s]`
        entering each chunk `n`, `(batch, num_heads, num_chunks, head_dim,
        head_dim)` (the pairs' real parts, then their imaginary parts, by
        the values' features), from the chunks' turned keys and values
        `(batch, num_heads, num_chunks, S, head_dim)`.

        With a chunk's own contribution `e[n] = lambda^S sum_j r^(-j)
        k_turned[j] v[j]` (computed as `e^{i omega S} sum_j r^(S - j)
        k_turned[j] v[j]`), `z'[n + 1] = lambda^S z'[n] + e[n]`: a loop over
        the chunks when their number is known when traced (as in every
        training step) and at most `MAX_LOOPED_CHUNKS`, else one product of
        the contributions with the powers `lambda^(S (n - 1 - c))` of every
        pair of chunks `c < n`."""
        positions = ops.cast(ops.arange(size), "float32")
        decay = ops.exp((size - positions) * log_r[:, None])[:, None, :, None]
        e = _pairs(ops.einsum("bhnjp,bhnjd->bhnpd", k_turned * decay, v), 3)
        turn = [part[:, None, :, None] for part in _rotation(size * omega)]
        e = _complex_times(turn, e, None)  # (batch, heads, chunks, pairs, d)
        num_chunks = ops.shape(k_turned)[2]
        if isinstance(num_chunks, int) and num_chunks <= MAX_LOOPED_CHUNKS:
            # lambda^S per head and pair, broadcast over the values.
            r = ops.exp(size * log_r)[:, None, None]
            step = [r * part[..., None] for part in _rotation(size * omega)]
            state = (
                ops.zeros_like(e[0][:, :, 0]),
                ops.zeros_like(e[1][:, :, 0]),
            )
            states = [state]
            for n in range(num_chunks - 1):
                state = _complex_times(step, state, None)
                state = (state[0] + e[0][:, :, n], state[1] + e[1][:, :, n])
                states.append(state)
            return ops.concatenate(
                [
                    ops.stack([z[part] for z in states], axis=2)
                    for part in (0, 1)
                ],
                axis=3,
            )
        chunks = ops.cast(ops.arange(num_chunks), "float32")
        gap = chunks[:, None] - chunks[None, :] - 1.0  # (n, c)
        past = ops.cast(gap >= 0, "float32")[..., None, None]
        gap = ops.maximum(gap, 0.0)[..., None, None] * size
        carry = ops.exp(gap * log_r[:, None]) * past  # (n, c, heads, 1)
        carry = (carry * ops.cos(gap * omega), carry * ops.sin(gap * omega))
        return ops.concatenate(
            [
                ops.einsum("nchp,bhcpd->bhnpd", carry[0], e[0])
                - ops.einsum("nchp,bhcpd->bhnpd", carry[1], e[1]),
                ops.einsum("nchp,bhcpd->bhnpd", carry[0], e[1])
                + ops.einsum("nchp,bhcpd->bhnpd", carry[1], e[0]),
            ],
            axis=3,
        )

    def _step(self, x, cache):
        y, next_cache = super()._step(x, cache[:-1])
        log_r, omega = self._modes()
        q, k, v = self._heads_of(y[:, 0])  # (batch, heads, head_dim)
        real, imaginary = ops.split(cache[-1], 2, axis=2)
        r = ops.exp(log_r)[:, None, None]
        lambda_re = (r * ops.cos(omega)[..., None])[None]
        lambda_im = (r * ops.sin(omega)[..., None])[None]
        k_re, k_im = _pairs(k, axis=-1)
        real, imaginary = (
            lambda_re * real
            - lambda_im * imaginary
            + k_re[..., None] * v[:, :, None],
            lambda_re * imaginary
            + lambda_im * real
            + k_im[..., None] * v[:, :, None],
        )
        state = ops.concatenate([real, imaginary], axis=2)
        o = ops.einsum("bhp,bhpd->bhd", q, state)
        next_cache.append(state)
        return self._output(y, o[:, None]), next_cache

    def initial_cache(self, batch_size):
        """The cache of an empty context: zero convolution and retention
        states."""
        state = ops.zeros(
            (batch_size, self._heads, self._head_dim, self._head_dim),
            dtype="float32",
        )
        return super().initial_cache(batch_size) + [state]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "window_length": self.window_length,
                "num_heads": self.num_heads,
                "chunk_size": self.chunk_size,
            }
        )
        return config


def _pairs(t, axis):
    """The real and imaginary parts of the complex pairs of `t`'s `axis`
    (its first half, then its second)."""
    return tuple(ops.split(t, 2, axis=axis))


def _rotation(angle):
    """`e^{i angle}` as (real, imaginary)."""
    return ops.cos(angle), ops.sin(angle)


def _complex_times(a, b, axis):
    """`a * b` of complex numbers held as (real, imaginary); `a`'s parts
    get a trailing axis when `axis` is given (to broadcast over `b`'s
    last)."""
    if axis is not None:
        a = (a[0][..., None], a[1][..., None])
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def _turn(t, angle):
    """`t`'s complex pairs times `e^{-i angle}`, as `t` is laid out: the
    real parts, then the imaginary ones."""
    real, imaginary = _pairs(t, axis=-1)
    cos, sin = ops.cos(angle), ops.sin(angle)
    return ops.concatenate(
        [real * cos + imaginary * sin, imaginary * cos - real * sin], axis=-1
    )
