import math

import keras
from keras import ops

from keras_sdgm.layers.frequency_initializer import FrequencyBandInitializer
from keras_sdgm.utils.validation import require_positive_int


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SpectralDictionary(keras.layers.Layer):
    """A learned dictionary of sinusoidal atoms mixed by per-token weights.

    Atom `k` at absolute position `t` and feature `d` is

    `S[k, t, d] = a[k, d] * sin(2 pi f[k, d] t / sequence_length + phi[k, d])`

    with learnable amplitude `a`, frequency `f` and phase `phi`, each of shape
    `(num_atoms, hidden_dim)`. Frequencies are in cycles per
    `sequence_length` positions. Called on coefficients `C` of shape
    `(batch, length, num_atoms)`, the layer returns the reconstruction
    `X_hat[b, t, d] = sum_k C[b, t, k] S[k, start_index + t, d]`.

    Positions are absolute: `start_index` shifts them, so a prefix and the
    same prefix extended see the same atoms, and one cached decoding step
    evaluates the dictionary at its own position only. `t` is always divided
    by the fixed `sequence_length` (the training window), never by the
    current input length; positions beyond it are allowed.

    The atoms are evaluated in float32 whatever the dtype policy (a float16
    `sin` of a large angle is meaningless) and cast to the compute dtype for
    the mixing product.

    Initializers (used when the argument is `None`):
    - frequency: `FrequencyBandInitializer(sequence_length / 2)`: atom `k`
      draws its per-feature frequencies from the `k`-th of `num_atoms` equal
      slices of `[0, sequence_length / 2)`, so the atoms tile the band that
      a window of integer positions resolves, up to its Nyquist frequency.
    - phase: uniform on `[0, 2 pi)`.
    - amplitude: normal with standard deviation 0.02 (GPT-2's scale), so a
      residual block starts close to the identity and the token's own
      embedding is not drowned by the reconstruction. With a unit-variance
      start (standard deviation `sqrt(2 / K)`) one of three seeds stalled
      (`experiments/ptb_slice.py`, table in the README).

    Args:
        num_atoms: int. Number of atoms `K`.
        hidden_dim: int. Feature dimension `D` of the reconstruction.
        sequence_length: int. The window length `L0` positions are divided
            by (the training window).
        amplitude_initializer: initializer for `a`, or `None` (see above).
        frequency_initializer: initializer for `f`, or `None` (see above).
        phase_initializer: initializer for `phi`, or `None` (see above).
        **kwargs: other `keras.layers.Layer` arguments, e.g. `name`, `dtype`.

    Example:
    >>> dictionary = SpectralDictionary(
    ...     num_atoms=16, hidden_dim=32, sequence_length=128)
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
        sequence_length,
        amplitude_initializer=None,
        frequency_initializer=None,
        phase_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.hidden_dim = require_positive_int("hidden_dim", hidden_dim)
        self.sequence_length = require_positive_int(
            "sequence_length", sequence_length
        )
        self.amplitude_initializer = keras.initializers.get(
            amplitude_initializer
            or keras.initializers.RandomNormal(
                stddev=0.02
            )
        )
        self.frequency_initializer = keras.initializers.get(
            frequency_initializer
            or FrequencyBandInitializer(self.sequence_length / 2)
        )
        self.phase_initializer = keras.initializers.get(
            phase_initializer
            or keras.initializers.RandomUniform(0.0, 2.0 * math.pi)
        )

    def build(self, coefficients_shape=None):
        shape = (self.num_atoms, self.hidden_dim)
        self.amplitude = self.add_weight(
            name="amplitude", shape=shape,
            initializer=self.amplitude_initializer,
        )
        self.frequency = self.add_weight(
            name="frequency", shape=shape,
            initializer=self.frequency_initializer,
        )
        self.phase = self.add_weight(
            name="phase", shape=shape, initializer=self.phase_initializer
        )

    def atoms(self, start_index, length):
        """Evaluates the atoms at positions `start_index .. start_index+length-1`.

        The angle `2 pi f t / L0 + phi` is range-reduced before the `sin`:
        with `t = q L0 + r` (integers, exact), `f t / L0 = f q + f r / L0`,
        and the whole cycles of each term are dropped exactly. `f q` is
        computed exactly by splitting `f` into a part on a grid of
        `2**-grid_bits` cycles and a small remainder, so the angle stays
        accurate to about 1e-5 rad at any position below
        `2**12 * sequence_length` (524,288 for L0 = 128) while `|f|` is
        below `sequence_length` (twice the initial band), instead of losing
        ~1e-3 rad per 4,000 cycles as a plain float32 product does. Every
        caller (training, evaluation and cached decoding) goes through
        here, so all compute the same atoms.

        Args:
            start_index: int or scalar int tensor. First absolute position.
            length: int or scalar int tensor. Number of positions.

        Returns:
            A float32 tensor `S` of shape `(length, num_atoms, hidden_dim)`.
        """
        positions = ops.cast(start_index, "int32") + ops.arange(
            length, dtype="int32"
        )
        windows = ops.cast(positions // self.sequence_length, "float32")
        offsets = ops.cast(positions % self.sequence_length, "float32")
        frequency = ops.cast(self.frequency, "float32")[None]
        # f = f_grid + f_rest with f_grid a multiple of 2**-grid_bits: for
        # |f| < L0 it has at most 12 significant bits, so q * f_grid is
        # exact for q < 2**12.
        grid = float(2 ** self._grid_bits())
        f_grid = ops.floor(frequency * grid) / grid
        f_rest = frequency - f_grid
        whole = windows[:, None, None] * f_grid
        rest = windows[:, None, None] * f_rest
        within = offsets[:, None, None] * frequency / self.sequence_length
        cycles = (
            (whole - ops.round(whole))
            + (rest - ops.round(rest))
            + (within - ops.round(within))
        )
        angles = 2.0 * math.pi * cycles + ops.cast(self.phase, "float32")[None]
        return ops.cast(self.amplitude, "float32")[None] * ops.sin(angles)

    def _grid_bits(self):
        """Fraction bits of the frequency grid: 12 significant bits below L0."""
        return max(0, 12 - math.ceil(math.log2(self.sequence_length)))

    def call(self, coefficients, start_index=0):
        atoms = self.atoms(start_index, ops.shape(coefficients)[-2])
        atoms = ops.cast(atoms, self.compute_dtype)
        return ops.einsum("blk,lkd->bld", coefficients, atoms)

    def compute_output_shape(self, coefficients_shape):
        return tuple(coefficients_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "hidden_dim": self.hidden_dim,
                "sequence_length": self.sequence_length,
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
