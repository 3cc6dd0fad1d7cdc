from keras_sdgm.losses.stft_magnitude_loss import STFTMagnitudeLoss
from keras_sdgm.losses.stft_magnitude_loss import stft_magnitude

__all__ = ["STFTMagnitudeLoss", "stft_magnitude"]
