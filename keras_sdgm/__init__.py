"""keras-sdgm: the Spectral Dictionary Generative Model for Keras 3."""

from keras_sdgm import layers
from keras_sdgm import losses
from keras_sdgm import models
from keras_sdgm.version import __version__

__all__ = ["layers", "losses", "models", "__version__"]
