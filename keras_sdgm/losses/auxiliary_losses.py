"""The auxiliary terms of the SDGM objective (SPEC section 4), as functions.

Each takes one block's `auxiliary_outputs` tensors and the padding mask and
returns a float32 scalar; padded positions are left out. `SDGMCausalLM`
averages them over its blocks and weights them.
"""

from keras import ops

from keras_sdgm.losses.stft_magnitude_loss import stft_magnitude_error


def _position_mask(reference, padding_mask):
    if padding_mask is None:
        return ops.ones(ops.shape(reference)[:2], "float32")
    return ops.cast(padding_mask, "float32")


def _masked_mean(values, mask):
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


def reconstruction_loss(target, reconstruction, padding_mask=None):
    """R: mean over real positions and features of `(X_hat - X)^2`.

    Args:
        target: `(batch, length, hidden_dim)`, what the block reconstructs.
        reconstruction: `(batch, length, hidden_dim)`, the dictionary's
            reconstruction `X_hat`.
        padding_mask: `(batch, length)` mask of real tokens, or `None`.
    """
    error = ops.cast(reconstruction, "float32") - ops.cast(target, "float32")
    squared_error = ops.mean(ops.square(error), axis=-1)
    return _masked_mean(squared_error, _position_mask(target, padding_mask))


def stft_loss(
    target, reconstruction, padding_mask=None, fft_length=256, frame_step=64
):
    """S: `STFTMagnitudeLoss` of `X_hat` against `X`, padding zeroed in both.

    Args:
        target: `(batch, length, hidden_dim)`.
        reconstruction: `(batch, length, hidden_dim)`.
        padding_mask: `(batch, length)` mask of real tokens, or `None`.
        fft_length: int. Frame and FFT length.
        frame_step: int. Hop between frames.
    """
    mask = _position_mask(target, padding_mask)[..., None]
    per_example = stft_magnitude_error(
        ops.cast(target, "float32") * mask,
        ops.cast(reconstruction, "float32") * mask,
        fft_length,
        frame_step,
    )
    return ops.mean(per_example)


def prior_loss(log_prob, padding_mask=None):
    """P: `-mean log p(C)` over real positions.

    Args:
        log_prob: `(batch, length)`, the prior's log-density of each
            position's coefficients (`GaussianMixturePrior.log_prob`).
        padding_mask: `(batch, length)` mask of real tokens, or `None`.
    """
    log_prob = ops.cast(log_prob, "float32")
    return -_masked_mean(log_prob, _position_mask(log_prob, padding_mask))
