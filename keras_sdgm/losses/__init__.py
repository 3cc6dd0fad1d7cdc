from keras_sdgm.losses.auxiliary_losses import prior_loss
from keras_sdgm.losses.auxiliary_losses import reconstruction_loss
from keras_sdgm.losses.auxiliary_losses import stft_loss
from keras_sdgm.losses.stft_magnitude_loss import STFTMagnitudeLoss
from keras_sdgm.losses.stft_magnitude_loss import stft_magnitude
from keras_sdgm.losses.stft_magnitude_loss import stft_magnitude_error

__all__ = [
    "STFTMagnitudeLoss",
    "prior_loss",
    "reconstruction_loss",
    "stft_loss",
    "stft_magnitude",
    "stft_magnitude_error",
]
