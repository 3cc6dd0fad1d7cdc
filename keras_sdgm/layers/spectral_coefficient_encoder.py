import math

import keras
import numpy as np
from keras import ops

from keras_sdgm.layers.causal_mixer import frames_before
from keras_sdgm.layers.depthwise_coefficient_encoder import (
    DepthwiseCoefficientEncoder,
)
from keras_sdgm.utils.initializers import clone_initializer
from keras_sdgm.utils.initializers import decay_for_time_scales
from keras_sdgm.utils.validation import require_bool
from keras_sdgm.utils.validation import require_positive_int

# The range of the chunk sizes chosen from the length (`chunk_size=None`);
# the largest is also the choice for a length unknown at tracing time.
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64
# With modes per feature: the longest chunk (one `(S, S, hidden_dim)` lag
# matrix), also the choice for a length unknown at tracing time.
MAX_FEATURE_CHUNK_SIZE = 128


def require_mode_options(modes_per_feature, data_dependent_decay):
    """The two options of the modes, checked: booleans, not both on.

    Returns:
        `(modes_per_feature, data_dependent_decay)`.
    """
    modes_per_feature = require_bool("modes_per_feature", modes_per_feature)
    data_dependent_decay = require_bool(
        "data_dependent_decay", data_dependent_decay
    )
    if modes_per_feature and data_dependent_decay:
        raise ValueError(
            "`data_dependent_decay` is built for modes shared by the "
            "features only. Use `modes_per_feature=False` with "
            "`data_dependent_decay=True`."
        )
    return modes_per_feature, data_dependent_decay


def complex_einsum(spec, a, b):
    """`einsum(spec, a, b)` of complex tensors held as (real, imaginary)."""
    return (
        ops.einsum(spec, a[0], b[0]) - ops.einsum(spec, a[1], b[1]),
        ops.einsum(spec, a[0], b[1]) + ops.einsum(spec, a[1], b[0]),
    )


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SpectralCoefficientEncoder(DepthwiseCoefficientEncoder):
    """Damped sinusoidal modes carry every past position forward in time.

    The block token mixer `"spectral"` (SPEC section 8): the method's atoms
    as a function of the lag between two positions rather than of the
    absolute position. After the short causal convolutions of
    `DepthwiseCoefficientEncoder` (`y`), each position emits mode inputs
    `u[t] = gamma * (y[t] W_in)` (`W_in`: `(hidden_dim, num_modes)`), and
    mode `m`, with `lambda_m = r_m exp(i omega_m)`, keeps the complex state

    ```
    z[t, m] = lambda_m z[t - 1, m] + u[t, m],   z[-1] = 0
    h[t, d] = sum_m B_re[m, d] Re z[t, m] + B_im[m, d] Im z[t, m]
            = sum_{s <= t} sum_m u[s, m] a[m, d] r_m^(t - s)
                                         sin(omega_m (t - s) + phi[m, d])
    C = act((y + h) W)
    ```

    with `omega_m = 2 pi f_m / window_length` (`f` in cycles per window, as
    in `SpectralDictionary`), `r_m = exp(-softplus(rho_m))` in `(0, 1)` and
    `gamma_m = sqrt(1 - r_m**2)`, which keeps a mode's state at the scale of
    its inputs whatever its decay. The read-out weights are the atoms'
    amplitude `a` and phase `phi` in Cartesian form, `B_re = a sin(phi)` and
    `B_im = a cos(phi)`, so that a step reads them without evaluating a sine.
    The modes are shared by the features, so the decoding state is
    `num_modes` complex numbers per sequence: a coefficient sees every past
    position at a per-token cost that does not depend on the context.

    With `modes_per_feature=True` (SPEC section 8's other form) there is no
    `W_in`: every feature drives its own copy of every mode, `z[t, m, d] =
    lambda_m z[t - 1, m, d] + gamma_m y[t, d]`, and `h[t, d] = sum_m
    B_re[m, d] Re z[t, m, d] + B_im[m, d] Im z[t, m, d]`: each feature is
    convolved with its own kernel, the damped atom `sum_m gamma_m a[m, d]
    r_m^tau sin(omega_m tau + phi[m, d])` of the lag `tau`. The decoding
    state is `num_modes * hidden_dim` complex numbers, and the full pass is
    exact in chunks too: the kernel's `(S, S, hidden_dim)` lag matrix
    inside a chunk (one chunk up to 128 positions), the modes' states
    between chunks.

    With `data_dependent_decay=True` the decay of every mode depends on
    the position's features, `r[t, m] = exp(-softplus(rho_m + (y[t]
    W_r)_m))` (`W_r`: `(hidden_dim, num_modes)`, zeros at first) and
    `gamma[t, m] = sqrt(1 - r[t, m]**2)`: the input decides how much of
    the past each mode keeps, as in RWKV-7 and Mamba. The full pass is
    exact in chunks too (`_selective_modes`), its lag matrix per sequence
    and chunk (`(batch, num_chunks, S, S, num_modes)`) instead of one, and
    its matrix between chunks per sequence too (`(batch, num_chunks,
    num_chunks, num_modes)`): memory quadratic in `length / S`, not yet
    measured at long lengths.

    The full pass computes the recurrence exactly in chunks of `S`
    positions: a lag matrix inside a chunk, and the state at the end of
    each chunk carried into the next ones by the powers `lambda^S`.
    Its cost per position is about `2 * hidden_dim * num_modes` (inputs) +
    `4 * num_modes * hidden_dim` (read-out) + `4 * S * num_modes`
    (the lag matrix) FLOPs, plus those of the convolutions and the
    projection, and a `(length / S)**2 * num_modes` matrix between
    chunks. `S` is `chunk_size`, or by default the power of two nearest
    `sqrt(2 * length)` within `[16, 64]`, which balances the two terms (16
    up to 128 positions, 32 at 256 and 512, 64 from 1,024;
    docs/PERFORMANCE.md); every `S` gives the same result. A cached step
    runs the recurrence itself. The modes are computed in float32 whatever
    the dtype policy.

    Initializers: frequencies uniform in `[0, window_length / 2)` (the band
    `SpectralDictionary` uses), decay time scales `1 / softplus(rho)` spread
    geometrically over `[1, 4 * window_length]` positions, `W_in`, `B_re`
    and `B_im` by `kernel_initializer`.

    Args:
        num_atoms: int. Number of coefficients per position.
        window_length: int. The unit of the frequencies (cycles per
            `window_length` positions) and the scale of the decay
            initialization.
        num_modes: int or `None`. Number of complex modes; `None` for
            `num_atoms`.
        chunk_size: int or `None`. Positions per chunk of the full pass
            with shared modes; `None` (default) to choose them from the
            length (above).
        modes_per_feature: bool. Every feature drives its own copy of the
            modes (state `num_modes * hidden_dim`) instead of `num_modes`
            inputs projected from the features (default, state
            `num_modes`).
        data_dependent_decay: bool. With shared modes, each position's
            features set the modes' decay there (above); `False` (default):
            decays that do not depend on the input.
        kernel_size: int. Width of the short depthwise convolutions.
        dilation_rates: list of ints. One depthwise convolution per rate.
        activation: activation of the coefficients.
        hidden_activation: activation of the depthwise convolutions.
        kernel_initializer: initializer of `W_in`, the read-out and the
            projection's kernel.
        **kwargs: other `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `(batch, length, hidden_dim)`; with a `cache`, one
            new position `(batch, 1, hidden_dim)`.
        cache: `None`, or the cache before the new position: the
            convolution states, then the modes' state `(batch, 2 *
            num_modes)` (real parts, then imaginary parts; `(batch, 2 *
            num_modes, hidden_dim)` with modes per feature), from a
            previous call or `initial_cache()`.
        cache_update_index: `None`, or an int or scalar int tensor in
            `[0, length]`. Without a `cache`: also return the cache that a
            call at position `cache_update_index` reads.

    Example:
    >>> encoder = SpectralCoefficientEncoder(num_atoms=8, window_length=16)
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
        num_modes=None,
        chunk_size=None,
        modes_per_feature=False,
        data_dependent_decay=False,
        **kwargs,
    ):
        super().__init__(num_atoms, **kwargs)
        self.window_length = require_positive_int(
            "window_length", window_length
        )
        if num_modes is None:
            num_modes = num_atoms
        self.num_modes = require_positive_int("num_modes", num_modes)
        self.modes_per_feature, self.data_dependent_decay = (
            require_mode_options(modes_per_feature, data_dependent_decay)
        )
        if chunk_size is not None:
            chunk_size = require_positive_int("chunk_size", chunk_size)
        self.chunk_size = chunk_size

    @property
    def receptive_field(self):
        """`None`: a coefficient sees every past position."""
        return None

    def build(self, inputs_shape):
        super().build(inputs_shape)
        if not self.modes_per_feature:
            self.mode_input = keras.layers.Dense(
                self.num_modes,
                use_bias=False,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="mode_input",
            )
            self.mode_input.build(inputs_shape)
        if self.data_dependent_decay:
            # Zeros: training starts from the static decays.
            self.decay_input = keras.layers.Dense(
                self.num_modes,
                use_bias=False,
                kernel_initializer="zeros",
                dtype=self.dtype_policy,
                name="decay_input",
            )
            self.decay_input.build(inputs_shape)
        modes = (self.num_modes,)
        read_out = (self.num_modes, inputs_shape[-1])
        self.frequency = self.add_weight(
            name="frequency",
            shape=modes,
            initializer=keras.initializers.RandomUniform(
                0.0, self.window_length / 2
            ),
        )
        self.decay = self.add_weight(
            name="decay",
            shape=modes,
            initializer=self._decay_initializer,
        )
        self.read_out_real = self.add_weight(
            name="read_out_real",
            shape=read_out,
            initializer=clone_initializer(self.kernel_initializer),
        )
        self.read_out_imaginary = self.add_weight(
            name="read_out_imaginary",
            shape=read_out,
            initializer=clone_initializer(self.kernel_initializer),
        )

    def sequence_flops_per_token(self, length):
        """Forward FLOPs per position of the work that has no weights.

        For chunks of `S` positions, `num_chunks = ceil(length / S)`. With
        shared modes: the lag matrix of a chunk applied to the mode inputs
        (two real products, `4 * S * num_modes`), the states carried
        between the chunks (four products per chunk, `8 * num_chunks *
        num_modes / S` per position), and adding them to every position
        (`8 * num_modes`); the same with the data-dependent decay, whose
        lag matrices' exponentials are not counted. With modes per feature (`D = hidden_dim`): the
        lag matrix `2 * S * D`, and with more than one chunk the states at
        the chunks' ends `4 * num_modes * D`, carrying them `8 * num_chunks
        * num_modes * D / S` and reading them out `4 * num_modes * D`. The
        matmul work with weights (mode inputs, read-out, convolutions,
        projection) is counted from the weights by the benchmarks.
        """
        size = self.chunk_size_for(length)
        num_chunks = -(-length // size)
        if self.modes_per_feature:
            hidden_dim = self.depthwise_kernels[0].shape[-1]
            states = 0
            if num_chunks > 1:
                states = self.num_modes * (8 + 8 * num_chunks / size)
            return hidden_dim * (2 * size + states)
        return self.num_modes * (4 * size + 8 * num_chunks / size + 8)

    def chunk_size_for(self, length):
        """Positions per chunk in a full pass over `length` positions.

        `chunk_size` if set. Otherwise, with shared modes, the power of two
        nearest `sqrt(2 * length)` within `[MIN_CHUNK_SIZE,
        MAX_CHUNK_SIZE]`, and `MAX_CHUNK_SIZE` when the length is not known
        when the computation is traced (a symbolic dimension). With modes
        per feature, the whole length up to `MAX_FEATURE_CHUNK_SIZE`
        (`MAX_FEATURE_CHUNK_SIZE` when unknown): there a chunk costs `2 * S
        * hidden_dim` FLOPs per position, and carrying states between
        chunks at least `8 * num_modes * hidden_dim`.
        """
        if self.chunk_size is not None:
            return self.chunk_size
        if self.modes_per_feature:
            if not isinstance(length, int):
                return MAX_FEATURE_CHUNK_SIZE
            return min(MAX_FEATURE_CHUNK_SIZE, max(length, 1))
        if not isinstance(length, int):
            return MAX_CHUNK_SIZE
        size = 2 ** math.floor(math.log2(2 * max(length, 1)) / 2 + 0.5)
        return min(MAX_CHUNK_SIZE, max(MIN_CHUNK_SIZE, size))

    def _decay_initializer(self, shape, dtype=None):
        # Time scales tau = 1 / softplus(rho) from 1 to 4 windows.
        tau = np.geomspace(1.0, 4.0 * self.window_length, shape[0])
        return ops.convert_to_tensor(decay_for_time_scales(tau), dtype)

    def _modes(self):
        """`log r`, `omega` and `gamma` of every mode, float32."""
        log_r = -ops.softplus(ops.cast(self.decay, "float32"))
        omega = ops.cast(self.frequency, "float32") * (
            2 * math.pi / self.window_length
        )
        gamma = ops.sqrt(-ops.expm1(2.0 * log_r))
        return log_r, omega, gamma

    def _powers(self, lag, log_r, omega):
        """Real and imaginary parts of `lambda_m ** lag`, 0 where lag < 0.

        `lag` is an int tensor; the result has its shape plus `(num_modes,)`.
        """
        past = ops.cast(lag >= 0, "float32")[..., None]
        lag = ops.cast(ops.maximum(lag, 0), "float32")[..., None]
        magnitude = ops.exp(lag * log_r) * past
        return magnitude * ops.cos(lag * omega), magnitude * ops.sin(
            lag * omega
        )

    def _read_out(self, real, imaginary):
        """`h` from the modes' states `(..., num_modes)` (float32)."""
        return ops.matmul(
            real, ops.cast(self.read_out_real, "float32")
        ) + ops.matmul(imaginary, ops.cast(self.read_out_imaginary, "float32"))

    def _sequence(self, x, cache_update_index):
        y, cache = super()._sequence(x, cache_update_index)
        if self.modes_per_feature:
            h, state = self._feature_modes(y, cache_update_index)
        elif self.data_dependent_decay:
            h, state = self._selective_modes(y, cache_update_index)
        else:
            h, state = self._shared_modes(y, cache_update_index)
        if cache is not None:
            cache.append(state)
        return y + ops.cast(h, y.dtype), cache

    def _feature_modes(self, y, cache_update_index):
        """`h` of every position with modes per feature, and the state.

        Inside a chunk of `S` positions, each feature is convolved with its
        kernel `k[tau, d] = sum_m gamma_m (B_re[m, d] Re lambda_m^tau +
        B_im[m, d] Im lambda_m^tau)` (an `(S, S, hidden_dim)` lag matrix,
        zero above the diagonal); the modes' states at the end of each
        chunk, `(batch, num_chunks, num_modes, hidden_dim)`, carry the
        earlier chunks in. The state at `cache_update_index` is `z` after
        the position before it, `(batch, 2 * num_modes, hidden_dim)`.
        """
        log_r, omega, gamma = self._modes()
        y = ops.cast(y, "float32")
        batch_size, length, hidden_dim = ops.shape(y)
        size = self.chunk_size_for(length)
        num_chunks = (length + size - 1) // size
        chunked = ops.pad(y, [[0, 0], [0, num_chunks * size - length], [0, 0]])
        chunked = ops.reshape(
            chunked, (batch_size, num_chunks, size, hidden_dim)
        )
        read_re = ops.cast(self.read_out_real, "float32")
        read_im = ops.cast(self.read_out_imaginary, "float32")

        # Inside a chunk: h[i] = sum_{j <= i} k[i - j] y[j].
        positions = ops.arange(size)
        lag_re, lag_im = self._powers(positions, log_r, omega)
        kernel = self._read_out(lag_re * gamma, lag_im * gamma)
        lag = positions[:, None] - positions[None, :]
        lags = ops.take(kernel, ops.maximum(lag, 0), axis=0)
        lags = lags * ops.cast(lag >= 0, "float32")[..., None]
        h = ops.einsum("ijd,bnjd->bnid", lags, chunked)

        if not (isinstance(num_chunks, int) and num_chunks == 1):
            # Chunk ends: e[q] = sum_j lambda^(size - 1 - j) gamma y[q, j].
            end_re, end_im = self._powers(size - 1 - positions, log_r, omega)
            end_re = ops.einsum("jm,bqjd->bqmd", end_re * gamma, chunked)
            end_im = ops.einsum("jm,bqjd->bqmd", end_im * gamma, chunked)
            # The state entering chunk n: sum_{q < n} lambda^(size (n-1-q))
            # e[q] ...
            chunks = ops.arange(num_chunks)
            carry_re, carry_im = self._powers(
                (chunks[:, None] - chunks[None, :] - 1) * size, log_r, omega
            )
            state_re, state_im = complex_einsum(
                "nqm,bqmd->bnmd", (carry_re, carry_im), (end_re, end_im)
            )
            # ... reaches position i as lambda^(i + 1) state, read out.
            step_re, step_im = self._powers(positions + 1, log_r, omega)
            step_re, step_im = step_re[..., None], step_im[..., None]
            h = (
                h
                + ops.einsum(
                    "imd,bnmd->bnid",
                    step_re * read_re + step_im * read_im,
                    state_re,
                )
                + ops.einsum(
                    "imd,bnmd->bnid",
                    step_re * read_im - step_im * read_re,
                    state_im,
                )
            )
        h = ops.reshape(h, (batch_size, num_chunks * size, hidden_dim))
        h = h[:, :length]
        if cache_update_index is None:
            return h, None
        # z[t - 1] = sum_{s < t} lambda^(t - 1 - s) gamma y[s].
        lag = cache_update_index - 1 - ops.arange(length)
        lag_re, lag_im = self._powers(lag, log_r, omega)
        real = ops.einsum("sm,bsd->bmd", lag_re * gamma, y)
        imaginary = ops.einsum("sm,bsd->bmd", lag_im * gamma, y)
        return h, ops.concatenate([real, imaginary], axis=1)

    def _decays(self, y):
        """`log r` and `gamma` of every position and mode, float32, with
        the decay depending on the position's features."""
        log_r = -ops.softplus(
            ops.cast(self.decay, "float32")
            + ops.cast(self.decay_input(y), "float32")
        )
        # 1 - r**2 = 2 t / (1 + t), t = tanh(-log r): as exact as -expm1(2
        # log r) where r is near 1, in ops that tf2onnx converts (it has no
        # Expm1; the static decays' is folded into a constant there).
        t = ops.tanh(-log_r)
        return log_r, ops.sqrt(2.0 * t / (1.0 + t))

    def _selective_modes(self, y, cache_update_index):
        """`h` and the state as in `_shared_modes`, with decays per position.

        `z[t] = r[t] exp(i omega) z[t - 1] + gamma[t] u[t]`: from `j` to
        `i` a mode turns by `omega (i - j)` and shrinks by `exp(c[i] -
        c[j])`, `c` the cumulative sum of `log r` (inside a chunk, then
        over the chunks' totals between chunks).
        """
        _, omega, _ = self._modes()
        log_r, gamma = self._decays(y)
        u = ops.cast(self.mode_input(y), "float32") * gamma
        batch_size, length = ops.shape(u)[0], ops.shape(u)[1]
        size = self.chunk_size_for(length)
        num_chunks = (length + size - 1) // size
        padding = [[0, 0], [0, num_chunks * size - length], [0, 0]]
        shape = (batch_size, num_chunks, size, self.num_modes)
        u = ops.reshape(ops.pad(u, padding), shape)
        cumulative = ops.cumsum(ops.reshape(ops.pad(log_r, padding), shape), 2)

        def transfer(exponent, past, turns):
            # exp(exponent) exp(i omega turns) where `past`, else 0; the
            # exponent is clipped first so that no discarded entry overflows.
            magnitude = ops.exp(ops.where(past, exponent, 0.0)) * ops.cast(
                past, "float32"
            )
            angle = ops.cast(turns, "float32")[..., None] * omega
            return magnitude * ops.cos(angle), magnitude * ops.sin(angle)

        # Inside a chunk: z[i] = sum_{j <= i} exp(c[i] - c[j]) e^{i omega
        # (i - j)} u[j].
        positions = ops.arange(size)
        lag = positions[:, None] - positions[None, :]
        lag_re, lag_im = transfer(
            cumulative[:, :, :, None] - cumulative[:, :, None, :],
            (lag >= 0)[..., None],
            lag,
        )
        real = ops.einsum("bnijm,bnjm->bnim", lag_re, u)
        imaginary = ops.einsum("bnijm,bnjm->bnim", lag_im, u)

        # Between chunks: the state entering chunk n sums the chunk-end
        # states e[q] of every q < n, shrunk by the chunks in between.
        # `before[n]` sums the chunks before n directly: `through - totals`
        # would round with chunk n's own, later positions in it.
        totals = cumulative[:, :, -1]
        through = ops.cumsum(totals, axis=1)
        before = ops.cumsum(
            ops.pad(totals[:, :-1], [[0, 0], [1, 0], [0, 0]]), axis=1
        )
        chunks = ops.arange(num_chunks)
        gap = chunks[:, None] - chunks[None, :] - 1
        carry_re, carry_im = transfer(
            before[:, :, None] - through[:, None, :],
            (gap >= 0)[..., None],
            gap * size,
        )
        state = complex_einsum(
            "bnqm,bqm->bnm",
            (carry_re, carry_im),
            (real[:, :, -1], imaginary[:, :, -1]),
        )
        # ... and reaches position i as exp(c[i]) e^{i omega (i + 1)} state.
        step = transfer(cumulative, ops.ones((size, 1), "bool"), positions + 1)
        return self._chunks_output(
            (real, imaginary), state, step, length, cache_update_index
        )

    def _chunks_output(self, chunks, state, step, length, cache_update_index):
        """`h` and the cached state from the chunked modes' pieces.

        `chunks`: the modes' states from inside each chunk, `(batch,
        num_chunks, S, num_modes)` real and imaginary parts; `state`: the
        state entering each chunk, `(batch, num_chunks, num_modes)`;
        `step`: what carries it to each position of its chunk (broadcast
        against `chunks`).
        """
        (real, imaginary), (step_re, step_im) = chunks, step
        state_re, state_im = state[0][:, :, None], state[1][:, :, None]
        real = real + step_re * state_re - step_im * state_im
        imaginary = imaginary + step_re * state_im + step_im * state_re

        batch_size, num_chunks, size = ops.shape(real)[:3]
        shape = (batch_size, num_chunks * size, self.num_modes)
        real = ops.reshape(real, shape)[:, :length]
        imaginary = ops.reshape(imaginary, shape)[:, :length]
        h = self._read_out(real, imaginary)
        if cache_update_index is None:
            return h, None
        states = ops.concatenate([real, imaginary], axis=-1)
        return h, frames_before(states, 1, cache_update_index)[:, 0]

    def _shared_modes(self, y, cache_update_index):
        """`h` of every position with modes shared by the features, and the
        state `(batch, 2 * num_modes)` at `cache_update_index` (or `None`)."""
        log_r, omega, gamma = self._modes()
        u = ops.cast(self.mode_input(y), "float32") * gamma
        batch_size, length = ops.shape(u)[0], ops.shape(u)[1]
        size = self.chunk_size_for(length)
        num_chunks = (length + size - 1) // size
        u = ops.pad(u, [[0, 0], [0, num_chunks * size - length], [0, 0]])
        u = ops.reshape(u, (batch_size, num_chunks, size, self.num_modes))

        # Inside a chunk: z[i] = sum_{j <= i} lambda^(i - j) u[j].
        positions = ops.arange(size)
        lag_re, lag_im = self._powers(
            positions[:, None] - positions[None, :], log_r, omega
        )
        real = ops.einsum("ijm,bnjm->bnim", lag_re, u)
        imaginary = ops.einsum("ijm,bnjm->bnim", lag_im, u)

        # Between chunks: the state entering chunk n sums the chunk-end
        # states e[q] of every earlier chunk q times lambda^(size (n-1-q)).
        chunks = ops.arange(num_chunks)
        carry_re, carry_im = self._powers(
            (chunks[:, None] - chunks[None, :] - 1) * size, log_r, omega
        )
        state = complex_einsum(
            "nqm,bqm->bnm",
            (carry_re, carry_im),
            (real[:, :, -1], imaginary[:, :, -1]),
        )
        # ... and reaches position i of the chunk as lambda^(i + 1) state.
        step = self._powers(positions + 1, log_r, omega)
        return self._chunks_output(
            (real, imaginary), state, step, length, cache_update_index
        )

    def _step(self, x, cache):
        y, next_cache = super()._step(x, cache[:-1])
        log_r, omega, gamma = self._modes()
        if self.modes_per_feature:
            # (batch, num_modes, hidden_dim): every feature drives every mode.
            u = ops.cast(y, "float32") * gamma[:, None]
            log_r, omega, axis = log_r[:, None], omega[:, None], 1
        else:
            if self.data_dependent_decay:
                log_r, gamma = self._decays(y[:, 0])
            u = ops.cast(self.mode_input(y[:, 0]), "float32") * gamma
            axis = -1
        real, imaginary = ops.split(cache[-1], 2, axis=axis)
        r = ops.exp(log_r)
        lambda_re, lambda_im = r * ops.cos(omega), r * ops.sin(omega)
        real, imaginary = (
            lambda_re * real - lambda_im * imaginary + u,
            lambda_re * imaginary + lambda_im * real,
        )
        if self.modes_per_feature:
            h = ops.sum(
                real * ops.cast(self.read_out_real, "float32")
                + imaginary * ops.cast(self.read_out_imaginary, "float32"),
                axis=1,
            )
        else:
            h = self._read_out(real, imaginary)
        next_cache.append(ops.concatenate([real, imaginary], axis=axis))
        return y + ops.cast(h, y.dtype)[:, None], next_cache

    def initial_cache(self, batch_size):
        """The cache of an empty context: zero convolution and mode states."""
        shape = (batch_size, 2 * self.num_modes)
        if self.modes_per_feature:
            shape += (self.depthwise_kernels[0].shape[-1],)
        modes = ops.zeros(shape, dtype="float32")
        return super().initial_cache(batch_size) + [modes]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "window_length": self.window_length,
                "num_modes": self.num_modes,
                "chunk_size": self.chunk_size,
                "modes_per_feature": self.modes_per_feature,
                "data_dependent_decay": self.data_dependent_decay,
            }
        )
        return config
