import math

import keras
from keras import ops

from keras_sdgm.layers.frequency_initializer import FrequencyBandInitializer
from keras_sdgm.utils.config_keys import renamed_config
from keras_sdgm.utils.positions import outer
from keras_sdgm.utils.positions import position_turns
from keras_sdgm.utils.sine import cos_turns
from keras_sdgm.utils.sine import sin_turns
from keras_sdgm.utils.validation import require_positive_int


def _mix(coefficients, atoms, compute_dtype):
    """`sum_k C[t, b, k] S[t, k, d]` with positions leading.

    Position-major operands make this one batched matrix product per
    position; the batch-major einsum `blk,lkd->bld` was ~5x slower under
    XLA on CPU (measured at L=512, K=256, D=512, batch 8).
    """
    atoms = ops.cast(atoms, compute_dtype)
    return ops.einsum("lbk,lkd->lbd", coefficients, atoms)


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SpectralDictionary(keras.layers.Layer):
    """A learned dictionary of sinusoidal atoms mixed by per-token weights.

    Atom `k` at absolute position `t` and feature `d` is

    `S[k, t, d] = a[k, d] * sin(2 pi f[k, d] t / window_length + phi[k, d])`

    with learnable amplitude `a`, frequency `f` and phase `phi`, each of shape
    `(num_atoms, hidden_dim)`. Frequencies are in cycles per
    `window_length` positions. Called on coefficients `C` of shape
    `(batch, length, num_atoms)`, the layer returns the reconstruction
    `X_hat[b, t, d] = sum_k C[b, t, k] S[k, start_index + t, d]`.

    Positions are absolute: `start_index` shifts them, so a prefix and the
    same prefix extended see the same atoms, and one cached decoding step
    evaluates the dictionary at its own position only. `t` is always divided
    by the fixed `window_length` (the training window), never by the
    current input length; positions beyond it are allowed.

    The atoms are evaluated in float32 whatever the dtype policy (a float16
    `sin` of a large angle is meaningless) and cast to the compute dtype for
    the mixing product.

    Initializers (used when the argument is `None`):
    - frequency: `FrequencyBandInitializer(window_length / 2)`: atom `k`
      draws its per-feature frequencies from the `k`-th of `num_atoms` equal
      slices of `[0, window_length / 2)`, so the atoms tile the band that
      a window of integer positions resolves, up to its Nyquist frequency.
    - phase: uniform on `[0, 2 pi)`.
    - amplitude: normal with standard deviation 0.02 (GPT-2's scale), so a
      residual block starts close to the identity and the token's own
      embedding is not drowned by the reconstruction. With a unit-variance
      start (standard deviation `sqrt(2 / K)`) one of three seeds stalled
      (docs/DESIGN.md, amplitude initialization).

    Args:
        num_atoms: int. Number of atoms `K`.
        hidden_dim: int. Feature dimension `D` of the reconstruction.
        window_length: int. The window length `L0` positions are divided
            by (the training window).
        amplitude_initializer: initializer for `a`, or `None` (see above).
        frequency_initializer: initializer for `f`, or `None` (see above).
        phase_initializer: initializer for `phi`, or `None` (see above).
        chunk_size: int. Positions mixed at a time. The atoms of one chunk,
            `(chunk_size, K, D)`, are built by angle addition from two small
            tables, mixed, and recomputed in the backward pass instead of
            stored, so training memory grows linearly in the length with a
            small constant. 16 was fastest on a 2-core CPU at K=256,
            D=512 and L=128..512 (see docs/PERFORMANCE.md); the result does
            not depend on it beyond float32 rounding.
        **kwargs: other `keras.layers.Layer` arguments, e.g. `name`, `dtype`.

    Example:
    >>> dictionary = SpectralDictionary(
    ...     num_atoms=16, hidden_dim=32, window_length=128)
    >>> coefficients = keras.random.normal((2, 10, 16))
    >>> dictionary(coefficients).shape
    (2, 10, 32)
    >>> # One decoding step at absolute position 500.
    >>> dictionary(coefficients[:, :1], start_index=500).shape
    (2, 1, 32)
    """

    def __init__(
        self,
        num_atoms,
        hidden_dim,
        window_length,
        amplitude_initializer=None,
        frequency_initializer=None,
        phase_initializer=None,
        chunk_size=16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.hidden_dim = require_positive_int("hidden_dim", hidden_dim)
        self.window_length = require_positive_int(
            "window_length", window_length
        )
        self.chunk_size = require_positive_int("chunk_size", chunk_size)
        self.amplitude_initializer = keras.initializers.get(
            amplitude_initializer
            or keras.initializers.RandomNormal(stddev=0.02)
        )
        self.frequency_initializer = keras.initializers.get(
            frequency_initializer
            or FrequencyBandInitializer(self.window_length / 2)
        )
        self.phase_initializer = keras.initializers.get(
            phase_initializer
            or keras.initializers.RandomUniform(0.0, 2.0 * math.pi)
        )

    def build(self, coefficients_shape=None):
        shape = (self.num_atoms, self.hidden_dim)
        self.amplitude = self.add_weight(
            name="amplitude",
            shape=shape,
            initializer=self.amplitude_initializer,
        )
        self.frequency = self.add_weight(
            name="frequency",
            shape=shape,
            initializer=self.frequency_initializer,
        )
        self.phase = self.add_weight(
            name="phase", shape=shape, initializer=self.phase_initializer
        )

    def atoms(self, start_index, length):
        """Evaluates the atoms at positions `start_index .. start_index+length-1`.

        One `sin` per position, atom and feature, of the exactly
        range-reduced angle (see `position_turns`): the reference evaluation, used
        for one decoding step and by `keras_sdgm.interpret`. `call` mixes
        longer inputs chunk by chunk with angle addition instead (same atoms
        within float32 rounding).

        Args:
            start_index: int or scalar int tensor. First absolute position.
            length: int or scalar int tensor. Number of positions.

        Returns:
            A float32 tensor `S` of shape `(length, num_atoms, hidden_dim)`.
        """
        positions = ops.cast(start_index, "int32") + ops.arange(
            length, dtype="int32"
        )
        turns = position_turns(
            positions, self.frequency, self.window_length, self.phase
        )
        return ops.cast(self.amplitude, "float32")[None] * sin_turns(turns)

    def atom_frequencies(self):
        """The frequency of every atom and feature, `f[k, d]`, `(K, D)`."""
        return ops.cast(self.frequency, "float32")

    def call(self, coefficients, start_index=0):
        length = coefficients.shape[-2]
        if not isinstance(length, int) or length == 1:
            # Unknown or symbolic lengths (exported signatures: `None` under
            # TensorFlow, a shape symbol under JAX) and one decoding step.
            atoms = self.atoms(start_index, ops.shape(coefficients)[-2])
            return ops.transpose(
                _mix(
                    ops.transpose(coefficients, (1, 0, 2)),
                    atoms,
                    self.compute_dtype,
                ),
                (1, 0, 2),
            )
        return self._chunked_call(coefficients, start_index, length)

    def _chunked_call(self, coefficients, start_index, length):
        """Mixes `chunk_size` positions at a time with angle addition.

        With `t = s + j` for a chunk starting at `s`,
        `sin(A_s + w j) = sin(A_s) cos(w j) + cos(A_s) sin(w j)`, where
        `A_s` is the exact angle at `s` (one `sin`/`cos` per chunk) and the
        table of `w j = 2 pi f j / L0`, `j < chunk_size`, is shared by all
        chunks and the whole batch (scaled by the amplitude): the atoms
        cost two multiplies and an add per element instead of a
        range-reduced `sin`. Both tables are
        computed before the loop over chunks, so a compiler cannot fuse
        their `sin`s back into the per-element work. Only one chunk's atoms
        `(chunk_size, K, D)` exist at a time, in the forward pass and,
        recomputed, in the backward pass, so memory grows with the length
        only through the inputs and outputs.
        """
        chunk_size = min(self.chunk_size, length)
        num_chunks = -(-length // chunk_size)
        batch_size = ops.shape(coefficients)[0]
        padded = ops.pad(
            coefficients,
            [[0, 0], [0, num_chunks * chunk_size - length], [0, 0]],
        )
        chunks = ops.reshape(
            ops.transpose(padded, (1, 0, 2)),
            (num_chunks, chunk_size, batch_size, self.num_atoms),
        )
        chunk_starts = ops.cast(start_index, "int32") + chunk_size * ops.arange(
            num_chunks, dtype="int32"
        )
        start_turns = position_turns(
            chunk_starts, self.frequency, self.window_length, self.phase
        )
        offset_turns = outer(
            ops.arange(chunk_size, dtype="float32") / self.window_length,
            ops.cast(self.frequency, "float32"),
        )
        ones = ops.ones((chunk_size,), "float32")
        amplitude = outer(ones, ops.cast(self.amplitude, "float32"))
        scaled_sin = amplitude * sin_turns(offset_turns)
        scaled_cos = amplitude * cos_turns(offset_turns)
        compute_dtype = self.compute_dtype

        @keras.remat
        def mix_chunk(chunk, start_sin, start_cos, scaled_sin, scaled_cos):
            atoms = (
                outer(ones, start_sin) * scaled_cos
                + outer(ones, start_cos) * scaled_sin
            )
            return _mix(chunk, atoms, compute_dtype)

        def mix(inputs):
            chunk, start_sin, start_cos = inputs
            return mix_chunk(
                chunk, start_sin, start_cos, scaled_sin, scaled_cos
            )

        mixed = ops.map(
            mix, (chunks, sin_turns(start_turns), cos_turns(start_turns))
        )
        mixed = ops.reshape(
            mixed, (num_chunks * chunk_size, batch_size, self.hidden_dim)
        )
        return ops.transpose(mixed[:length], (1, 0, 2))

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
                "window_length": self.window_length,
                "chunk_size": self.chunk_size,
                "amplitude_initializer": keras.initializers.serialize(
                    self.amplitude_initializer
                ),
                "frequency_initializer": keras.initializers.serialize(
                    self.frequency_initializer
                ),
                "phase_initializer": keras.initializers.serialize(
                    self.phase_initializer
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # `window_length` was `sequence_length` in earlier releases.
        return super().from_config(
            renamed_config(config, {"sequence_length": "window_length"})
        )
