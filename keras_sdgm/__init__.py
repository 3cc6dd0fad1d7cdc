"""keras-sdgm: the Spectral Dictionary Generative Model for Keras 3."""

from keras_sdgm import datasets
from keras_sdgm import layers
from keras_sdgm import losses
from keras_sdgm import models
from keras_sdgm.evaluation import evaluate_perplexity
from keras_sdgm.version import __version__

__all__ = [
    "datasets",
    "evaluate_perplexity",
    "layers",
    "losses",
    "models",
    "__version__",
]
