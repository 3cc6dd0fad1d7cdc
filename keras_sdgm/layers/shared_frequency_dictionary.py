import math

import keras
from keras import ops

from keras_sdgm.layers.frequency_initializer import FrequencyBandInitializer
from keras_sdgm.utils.positions import position_turns
from keras_sdgm.utils.sine import cos_turns
from keras_sdgm.utils.sine import sin_turns
from keras_sdgm.utils.validation import require_positive_int


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SharedFrequencyDictionary(keras.layers.Layer):
    """Sinusoidal atoms with one frequency per atom, mixed by matmuls.

    Atom `k` at absolute position `t` and feature `d` is

    `S[k, t, d] = a[k, d] * sin(2 pi f[k] t / window_length + phi[k, d])`

    the atom of `SpectralDictionary` with its frequency shared by the
    features (amplitude and phase stay per feature). Called on coefficients
    `C` of shape `(batch, length, num_atoms)`, the layer returns
    `X_hat[b, t, d] = sum_k C[b, t, k] S[k, start_index + t, d]`.

    Sharing the frequency makes the atoms separable in position: with
    `theta[t, k] = 2 pi f[k] t / window_length`, angle addition gives
    `S[k, t, d] = sin(theta[t, k]) a[k, d] cos(phi[k, d])
    + cos(theta[t, k]) a[k, d] sin(phi[k, d])`, so the reconstruction is
    one matrix product of the modulated coefficients
    `[C sin(theta), C cos(theta)]`, `(batch, length, 2 K)`, with the
    `(2 K, D)` read-out `[a cos(phi); a sin(phi)]`: `4 K D` FLOPs per token
    and `length * K` sines per call, where `SpectralDictionary` builds a
    `(K, D)` table of atoms at every position (`length * K * D` element-wise
    work, a third of the default model's training step at D=512;
    docs/PERFORMANCE.md).

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
        **kwargs: other `keras.layers.Layer` arguments, e.g. `name`, `dtype`.

    Call arguments:
        coefficients: tensor `(batch, length, num_atoms)`.
        start_index: int or scalar int tensor. Absolute position of the
            first coefficient (a decoding step passes its own position).

    Example:
    >>> dictionary = SharedFrequencyDictionary(
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_atoms = require_positive_int("num_atoms", num_atoms)
        self.hidden_dim = require_positive_int("hidden_dim", hidden_dim)
        self.window_length = require_positive_int(
            "window_length", window_length
        )
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
            shape=(self.num_atoms,),
            initializer=self.frequency_initializer,
        )
        self.phase = self.add_weight(
            name="phase", shape=shape, initializer=self.phase_initializer
        )

    def atoms(self, start_index, length):
        """Evaluates the atoms at positions `start_index .. start_index+length-1`.

        The reference evaluation (one `sin` per position, atom and feature),
        used by tests and `keras_sdgm.interpret`; `call` never builds it.

        Args:
            start_index: int or scalar int tensor. First absolute position.
            length: int or scalar int tensor. Number of positions.

        Returns:
            A float32 tensor `S` of shape `(length, num_atoms, hidden_dim)`.
        """
        phase = ops.cast(self.phase, "float32") / (2.0 * math.pi)
        turns = self._atom_turns(start_index, length) + phase[None]
        return ops.cast(self.amplitude, "float32")[None] * sin_turns(turns)

    def _atom_turns(self, start_index, length):
        """The atoms' angles without their phases, in turns, `(L, K, 1)`."""
        return self._turns(start_index, length)[:, :, None]

    def atom_frequencies(self):
        """The frequency of every atom and feature, `f[k]`, `(K, D)`."""
        return ops.broadcast_to(
            ops.cast(self.frequency, "float32")[:, None],
            (self.num_atoms, self.hidden_dim),
        )

    def _read_out(self):
        """`[a cos(phi); a sin(phi)]`, `(2 K, D)`, float32."""
        phase = ops.cast(self.phase, "float32") / (2.0 * math.pi)
        amplitude = ops.cast(self.amplitude, "float32")
        return ops.concatenate(
            [amplitude * cos_turns(phase), amplitude * sin_turns(phase)],
            axis=0,
        )

    def _turns(self, start_index, length, frequency=None):
        """`f t / L0` in turns at the call's positions, `(L,) + f.shape`."""
        positions = ops.cast(start_index, "int32") + ops.arange(
            length, dtype="int32"
        )
        if frequency is None:
            frequency = self.frequency
        return position_turns(positions, frequency, self.window_length)

    def call(self, coefficients, start_index=0):
        turns = self._turns(start_index, ops.shape(coefficients)[-2])
        dtype = coefficients.dtype
        modulated = ops.concatenate(
            [
                coefficients * ops.cast(sin_turns(turns), dtype),
                coefficients * ops.cast(cos_turns(turns), dtype),
            ],
            axis=-1,
        )
        return ops.matmul(modulated, ops.cast(self._read_out(), dtype))

    def flops_per_token(self):
        """Forward matmul FLOPs per token: the `(2 K, D)` read-out."""
        return 4 * self.num_atoms * self.hidden_dim

    def compute_output_shape(self, coefficients_shape):
        return tuple(coefficients_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_atoms": self.num_atoms,
                "hidden_dim": self.hidden_dim,
                "window_length": self.window_length,
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
