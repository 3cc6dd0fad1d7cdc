import keras
from keras import ops

from keras_sdgm.layers.shared_frequency_dictionary import (
    SharedFrequencyDictionary,
)
from keras_sdgm.utils.sine import cos_turns
from keras_sdgm.utils.sine import sin_turns


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SeparableFrequencyDictionary(SharedFrequencyDictionary):
    """Sinusoidal atoms with one frequency per atom and feature, by matmuls.

    Atom `k` at absolute position `t` and feature `d` is

    `S[k, t, d] = a[k, d] * sin(2 pi (f[k] + g[d]) t / window_length
    + phi[k, d])`

    the atom of `SpectralDictionary`, whose frequency `f[k, d]` is free for
    every atom and feature, with the frequency split into an atom's
    frequency `f[k]` and a feature's offset `g[d]`. Every atom and feature
    still has its own frequency (so the features of one atom drift apart
    in phase along the positions, as the paper's atoms do), but the atoms
    become separable in position, as in `SharedFrequencyDictionary` (the
    case `g = 0`): with `theta[t, k] = 2 pi f[k] t / L0`,
    `gamma[t, d] = 2 pi g[d] t / L0` and the complex amplitudes
    `A = a cos(phi) + i a sin(phi)`,

    ```
    Z[t, d]     = sum_k C[t, k] exp(i theta[t, k]) A[k, d]
    X_hat[t, d] = Im(exp(i gamma[t, d]) Z[t, d])
                = Re Z sin(gamma) + Im Z cos(gamma)
    ```

    `Z` is two matrix products of modulated coefficients, `(batch, length,
    2 K)`, with the `(2 K, D)` read-out `[a cos(phi); a sin(phi)]`: `8 K D`
    FLOPs per token, `length * (K + D) + 2 K D` sines per call, and no
    `(K, D)` table per position (the `length * K * D` element-wise work that
    makes `SpectralDictionary` a third of the default model's training step
    at batch 8; docs/PERFORMANCE.md). A call on one position (a decoding
    step) evaluates that position's atoms instead, `K D` sines, as
    `SpectralDictionary` does.

    Positions are absolute, as in `SpectralDictionary`: `start_index`
    shifts them, `t` is divided by the fixed `window_length`, and positions
    beyond it are allowed; the angles are range-reduced exactly
    (`keras_sdgm.utils.positions.position_turns`) and evaluated in float32
    whatever the dtype policy.

    Args:
        num_atoms: int. Number of atoms `K`.
        hidden_dim: int. Feature dimension `D` of the reconstruction.
        window_length: int. The window length `L0` positions are divided
            by (the training window).
        amplitude_initializer: initializer for `a`, `(K, D)` (default:
            normal with standard deviation 0.02, as `SpectralDictionary`).
        frequency_initializer: initializer for `f`, `(K,)` (default:
            `FrequencyBandInitializer(window_length / 2)`, one frequency in
            each of `K` equal slices of the band up to Nyquist).
        phase_initializer: initializer for `phi`, `(K, D)` (default:
            uniform on `[0, 2 pi)`).
        feature_frequency_initializer: initializer for `g`, `(D,)`
            (default: uniform on `[0, window_length / (2 K))`, the width of
            one atom's slice, so that an atom's features spread over about
            a slice as `SpectralDictionary`'s do at initialization).
        **kwargs: other `keras.layers.Layer` arguments, e.g. `name`, `dtype`.

    Call arguments:
        coefficients: tensor `(batch, length, num_atoms)`.
        start_index: int or scalar int tensor. Absolute position of the
            first coefficient (a decoding step passes its own position).

    Example:
    >>> dictionary = SeparableFrequencyDictionary(
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
        feature_frequency_initializer=None,
        **kwargs,
    ):
        super().__init__(
            num_atoms,
            hidden_dim,
            window_length,
            amplitude_initializer=amplitude_initializer,
            frequency_initializer=frequency_initializer,
            phase_initializer=phase_initializer,
            **kwargs,
        )
        self.feature_frequency_initializer = keras.initializers.get(
            feature_frequency_initializer
            or keras.initializers.RandomUniform(
                0.0, self.window_length / (2 * self.num_atoms)
            )
        )

    def build(self, coefficients_shape=None):
        super().build(coefficients_shape)
        self.feature_frequency = self.add_weight(
            name="feature_frequency",
            shape=(self.hidden_dim,),
            initializer=self.feature_frequency_initializer,
        )

    def atom_frequencies(self):
        """The frequency of every atom and feature, `f[k] + g[d]`, `(K, D)`."""
        return (
            ops.cast(self.frequency, "float32")[:, None]
            + ops.cast(self.feature_frequency, "float32")[None]
        )

    def _atom_turns(self, start_index, length):
        # Each term reduced exactly on its own: `f[k] + g[d]` rounded to
        # float32 first would drift by ~1e-4 turns at position 3,000.
        feature_turns = self._turns(start_index, length, self.feature_frequency)
        return super()._atom_turns(start_index, length) + feature_turns[:, None]

    def call(self, coefficients, start_index=0):
        if coefficients.shape[-2] == 1:
            # One decoding step: its own atoms, `K D` sines, cost less than
            # the read-out's `2 K D` (docs/GENERATION.md).
            atoms = ops.cast(self.atoms(start_index, 1)[0], coefficients.dtype)
            return ops.matmul(coefficients, atoms)
        length = ops.shape(coefficients)[-2]
        atom_turns = self._turns(start_index, length)
        feature_turns = self._turns(start_index, length, self.feature_frequency)
        dtype = coefficients.dtype
        real = coefficients * ops.cast(cos_turns(atom_turns), dtype)
        imaginary = coefficients * ops.cast(sin_turns(atom_turns), dtype)
        # [Re Z, Im Z] = [[Re, -Im], [Im, Re]] (C exp(i theta)) times
        # [a cos(phi); a sin(phi)]: one product for both parts.
        modulated = ops.stack(
            [
                ops.concatenate([real, -imaginary], axis=-1),
                ops.concatenate([imaginary, real], axis=-1),
            ]
        )
        mixed = ops.matmul(modulated, ops.cast(self._read_out(), dtype))
        return mixed[0] * ops.cast(sin_turns(feature_turns), dtype) + mixed[
            1
        ] * ops.cast(cos_turns(feature_turns), dtype)

    def flops_per_token(self):
        """Forward matmul FLOPs per token: two `(2 K, D)` read-outs."""
        return 8 * self.num_atoms * self.hidden_dim

    def get_config(self):
        config = super().get_config()
        config["feature_frequency_initializer"] = keras.initializers.serialize(
            self.feature_frequency_initializer
        )
        return config
