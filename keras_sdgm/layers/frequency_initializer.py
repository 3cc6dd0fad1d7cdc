import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_sdgm")
class FrequencyBandInitializer(keras.initializers.RandomUniform):
    """Spreads atom frequencies across the band a window can resolve.

    For a weight of shape `(num_atoms, hidden_dim)`, atom `k` gets frequencies
    drawn uniformly from its own slice of `[0, max_frequency)`:
    `f[k, d] = (k + u[k, d]) * max_frequency / num_atoms` with `u ~ U(0, 1)`.
    A weight of shape `(num_atoms,)` (one frequency per atom) gets one draw
    per slice.
    Atom 0 holds the slowest waves, the last atom the fastest, and together
    the atoms tile the band evenly.

    Frequencies are in cycles per `window_length` positions (the unit of
    `SpectralDictionary`), so `max_frequency = window_length / 2` ends the
    band at the Nyquist frequency of integer positions: anything faster
    would alias onto a slower wave.

    Args:
        max_frequency: float. Upper edge of the band, in cycles per window.
        seed: int, `keras.random.SeedGenerator` or `None`. Random seed.

    Example:
    >>> init = FrequencyBandInitializer(max_frequency=64.0, seed=0)
    >>> f = init((4, 8))  # row k lies in [16 k, 16 (k + 1))
    """

    def __init__(self, max_frequency, seed=None):
        if not max_frequency > 0:
            raise ValueError(
                f"`max_frequency` must be positive. Received: {max_frequency}"
            )
        self.max_frequency = float(max_frequency)
        super().__init__(minval=0.0, maxval=1.0, seed=seed)

    def __call__(self, shape, dtype=None):
        if len(shape) not in (1, 2):
            raise ValueError(
                "FrequencyBandInitializer expects a shape (num_atoms,) or "
                f"(num_atoms, hidden_dim). Received: shape={shape}"
            )
        offsets = super().__call__(shape, dtype=dtype)
        atom_index = ops.reshape(
            ops.cast(ops.arange(shape[0]), offsets.dtype),
            (shape[0],) + (1,) * (len(shape) - 1),
        )
        return (atom_index + offsets) * (self.max_frequency / shape[0])

    def get_config(self):
        config = super().get_config()
        del config["minval"], config["maxval"]
        config["max_frequency"] = self.max_frequency
        return config
