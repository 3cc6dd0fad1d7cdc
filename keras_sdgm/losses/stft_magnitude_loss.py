import keras
from keras import ops

from keras_sdgm.utils.validation import require_positive_int

# Added under the square root of |STFT|: keeps the gradient of the
# magnitude finite at 0 (where it is otherwise 0/0) and moves a magnitude m
# by at most sqrt(EPSILON) = 1e-6 absolute, about EPSILON / (2 m) relative.
_MAGNITUDE_EPSILON = 1e-12


def stft_magnitude(signals, fft_length, frame_step):
    """`|STFT|` of each channel of `signals`, as SPEC section 4 defines it.

    Args:
        signals: float tensor `(batch, length, channels)`.
        fft_length: int. Frame and FFT length.
        frame_step: int. Hop between frames.

    Returns:
        float32 tensor `(batch, channels, frames, fft_length // 2 + 1)`.
        Each channel's series is zero-padded by `fft_length // 2` on both
        sides, cut into frames, windowed by a periodic Hann window and
        transformed with a real FFT.
    """
    signals = ops.cast(signals, "float32")
    batch, length, channels = ops.shape(signals)
    series = ops.reshape(
        ops.transpose(signals, (0, 2, 1)), (batch * channels, length)
    )
    pad = fft_length // 2
    series = ops.pad(series, [[0, 0], [pad, pad]])
    real, imag = ops.stft(
        series,
        sequence_length=fft_length,
        sequence_stride=frame_step,
        fft_length=fft_length,
        window="hann",
        center=False,
    )
    magnitude = ops.sqrt(
        ops.square(real) + ops.square(imag) + _MAGNITUDE_EPSILON
    )
    frames, bins = ops.shape(magnitude)[1], ops.shape(magnitude)[2]
    return ops.reshape(magnitude, (batch, channels, frames, bins))


def stft_magnitude_error(y_true, y_pred, fft_length, frame_step):
    """Per example, mean over (channel, frame, bin) of the squared difference
    of `stft_magnitude`s; inputs `(batch, length, channels)`, output
    `(batch,)`."""
    difference = stft_magnitude(
        y_pred, fft_length, frame_step
    ) - stft_magnitude(y_true, fft_length, frame_step)
    return ops.mean(ops.square(difference), axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package="keras_sdgm")
class STFTMagnitudeLoss(keras.losses.Loss):
    """Mean squared difference of short-time Fourier magnitudes.

    For inputs of shape `(batch, length, channels)`, every channel's series
    over `length` is zero-padded by `fft_length // 2` on both sides, framed
    with `frame_step`, windowed by a periodic Hann window and transformed;
    the loss of an example is the mean over (channel, frame, bin) of
    `(|STFT(y_pred)| - |STFT(y_true)|)^2`, and the usual Keras reduction
    averages examples. Zero padding (not reflection) keeps the loss defined
    when `length <= fft_length // 2`, the paper's own setting.

    The loss always computes in float32, also under a mixed-precision
    policy. The magnitude is `sqrt(re^2 + im^2 + 1e-12)`: the exact
    magnitude has an infinite gradient at 0, which has driven training to
    NaN; the guard changes the loss by far less than 1e-5 relative.

    To leave padding out, multiply both signals by the padding mask before
    calling the loss (padded positions are then zero in both).

    Args:
        fft_length: int. Frame length and FFT size (default 256).
        frame_step: int. Hop between frames (default 64).
        window: str. Only `"hann"` (periodic) is supported.
        reduction: Keras loss reduction.
        name: str. Name of the loss.
        dtype: must stay float32 (the FFT needs it); other values raise.

    Example:
    >>> loss = STFTMagnitudeLoss(fft_length=16, frame_step=4)
    >>> y_true = keras.random.normal((2, 32, 3))
    >>> value = loss(y_true, y_true * 0.5)
    >>> model.compile(optimizer="adam", loss=STFTMagnitudeLoss())  # doctest: +SKIP
    """

    def __init__(
        self,
        fft_length=256,
        frame_step=64,
        window="hann",
        reduction="sum_over_batch_size",
        name="stft_magnitude_loss",
        dtype=None,
    ):
        if dtype not in (None, "float32"):
            raise ValueError(
                "STFTMagnitudeLoss computes in float32 only. "
                f"Received: dtype={dtype!r}"
            )
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.fft_length = require_positive_int("fft_length", fft_length)
        self.frame_step = require_positive_int("frame_step", frame_step)
        if window != "hann":
            raise ValueError(
                "Only the periodic Hann window is supported. "
                f"Received: window={window!r}"
            )
        self.window = window

    def call(self, y_true, y_pred):
        return stft_magnitude_error(
            _as_channels(y_true),
            _as_channels(y_pred),
            self.fft_length,
            self.frame_step,
        )

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "fft_length": self.fft_length,
                "frame_step": self.frame_step,
                "window": self.window,
            }
        )
        return config


def _as_channels(x):
    """Accepts `(batch, length)` or `(batch, length, channels)`."""
    x = ops.convert_to_tensor(x)
    if len(x.shape) == 2:
        return x[..., None]
    if len(x.shape) != 3:
        raise ValueError(
            "STFTMagnitudeLoss expects inputs of shape (batch, length) or "
            f"(batch, length, channels). Received shape: {x.shape}"
        )
    return x
